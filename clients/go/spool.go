package metering

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
)

// The spool is a directory of append-only segment files of RecordUsage
// requests that could not be sent yet:
//
//	LOCK                  flock'ed by the one process that uses the directory
//	00000000000000000001.seg
//	00000000000000000002.seg   ...
//	rejected.jsonl        records the service refused for good (dead letters)
//
// A segment starts with spoolMagic and holds frames
// [uint32 length][uint32 CRC-32C of payload][payload = RecordUsageRequest],
// big-endian. Appends go to the one active segment and are fsynced before
// Append returns; concurrent appends share one fsync (group commit). A
// segment is never rewritten: the replayer seals the active one, sends each
// sealed segment's records, appends what must be tried again to the new
// active segment and only then deletes the sealed file. A crash anywhere in
// between leaves every record in at least one segment; a record sent twice
// is harmless because the service answers a repeated request_id with the
// stored result. A frame cut short by a crash (the file's tail) is ignored.

const (
	spoolMagic    = "MTRSPL1\n"
	segmentSuffix = ".seg"
	lockName      = "LOCK"
	rejectedName  = "rejected.jsonl"
	maxFrameBytes = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type spool struct {
	dir  string
	lock *os.File

	mu       sync.Mutex
	cond     *sync.Cond
	writing  bool     // a leader is writing a group
	pending  [][]byte // frames waiting for the next group
	pendingN int      // records in pending
	nextGen  uint64   // the group the next Append joins
	doneGen  uint64   // groups up to this one are written (or failed)
	failed   map[uint64]error
	active   *os.File // nil: the next group opens a new segment
	activeNm string
	nextSeq  uint64
	counts   map[string]int // records per segment file name
	total    int            // records in all segments
}

// openSpool opens (creating) dir, takes its lock and counts what is there.
func openSpool(dir string) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("metering: spool %s: %w", dir, err)
	}
	s := &spool{dir: dir, lock: lock, failed: map[uint64]error{}, counts: map[string]int{}, nextGen: 1, nextSeq: 1}
	s.cond = sync.NewCond(&s.mu)
	names, err := s.segments()
	if err != nil {
		_ = unlockDir(lock)
		return nil, err
	}
	for _, name := range names {
		recs, err := readSegment(filepath.Join(dir, name))
		if err != nil {
			_ = unlockDir(lock)
			return nil, err
		}
		s.counts[name] = len(recs)
		s.total += len(recs)
		if seq, err := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64); err == nil && seq >= s.nextSeq {
			s.nextSeq = seq + 1
		}
	}
	return s, nil
}

// segments lists the segment files, oldest first.
func (s *spool) segments() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), segmentSuffix) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// Len is the number of records in the spool.
func (s *spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Append writes recs durably (written and fsynced when it returns nil).
func (s *spool) Append(recs []*meteringv1.RecordUsageRequest) error {
	if len(recs) == 0 {
		return nil
	}
	frames := make([][]byte, 0, len(recs))
	for _, r := range recs {
		payload, err := proto.Marshal(r)
		if err != nil {
			return err
		}
		frame := make([]byte, 8+len(payload))
		binary.BigEndian.PutUint32(frame[0:4], uint32(len(payload)))
		binary.BigEndian.PutUint32(frame[4:8], crc32.Checksum(payload, crcTable))
		copy(frame[8:], payload)
		frames = append(frames, frame)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, frames...)
	s.pendingN += len(frames)
	gen := s.nextGen
	for s.doneGen < gen {
		if s.writing {
			s.cond.Wait()
			continue
		}
		// Lead: write everything pending as one group with one fsync.
		s.writing = true
		group, n, g := s.pending, s.pendingN, s.nextGen
		s.pending, s.pendingN = nil, 0
		s.nextGen++
		s.mu.Unlock()
		name, err := s.writeGroup(group)
		s.mu.Lock()
		s.writing = false
		s.doneGen = g
		if err != nil {
			s.failed[g] = err
		} else {
			s.counts[name] += n
			s.total += n
		}
		s.cond.Broadcast()
	}
	if err := s.failed[gen]; err != nil {
		return fmt.Errorf("metering: spool append: %w", err)
	}
	return nil
}

// writeGroup appends frames to the active segment (opening one if needed)
// and fsyncs it. Only the leader calls it, so it owns s.active meanwhile.
func (s *spool) writeGroup(frames [][]byte) (string, error) {
	if s.active == nil {
		name := fmt.Sprintf("%020d%s", s.nextSeq, segmentSuffix)
		s.nextSeq++
		f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		if err != nil {
			return "", err
		}
		if _, err := f.WriteString(spoolMagic); err != nil {
			_ = f.Close()
			return "", err
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return "", err
		}
		if err := syncDir(s.dir); err != nil {
			_ = f.Close()
			return "", err
		}
		s.active, s.activeNm = f, name
	}
	w := bufio.NewWriterSize(s.active, 64<<10)
	for _, fr := range frames {
		if _, err := w.Write(fr); err != nil {
			s.abandonActive()
			return "", err
		}
	}
	if err := w.Flush(); err != nil {
		s.abandonActive()
		return "", err
	}
	if err := s.active.Sync(); err != nil {
		s.abandonActive()
		return "", err
	}
	return s.activeNm, nil
}

// abandonActive closes the active segment after a failed write: what it
// holds up to the failure stays readable, nothing more is appended to it.
func (s *spool) abandonActive() {
	_ = s.active.Close()
	s.active, s.activeNm = nil, ""
}

// Seal closes the active segment, so that the next Append starts a new
// one, and returns the names of all sealed segments, oldest first.
func (s *spool) Seal() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.writing {
		s.cond.Wait()
	}
	if s.active != nil {
		err := s.active.Close()
		s.active, s.activeNm = nil, ""
		if err != nil {
			return nil, err
		}
	}
	return s.segments()
}

// Read returns the records of a sealed segment.
func (s *spool) Read(name string) ([]*meteringv1.RecordUsageRequest, error) {
	return readSegment(filepath.Join(s.dir, name))
}

// Remove deletes a sealed segment whose records are all sent or re-appended.
func (s *spool) Remove(name string) error {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.mu.Lock()
	s.total -= s.counts[name]
	delete(s.counts, name)
	s.mu.Unlock()
	return nil
}

// AppendRejected appends one line to rejected.jsonl and fsyncs it.
func (s *spool) AppendRejected(line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(s.dir, rejectedName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Close closes the active segment and releases the directory lock.
func (s *spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.writing {
		s.cond.Wait()
	}
	var err error
	if s.active != nil {
		err = s.active.Close()
		s.active = nil
	}
	if s.lock != nil {
		err = errors.Join(err, unlockDir(s.lock))
		s.lock = nil
	}
	return err
}

// readSegment reads the records of a segment file, stopping at the first
// incomplete or corrupt frame (a tail torn by a crash).
func readSegment(path string) ([]*meteringv1.RecordUsageRequest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	magic := make([]byte, len(spoolMagic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return nil, nil // created but not yet written: empty
	}
	if string(magic) != spoolMagic {
		return nil, fmt.Errorf("metering: %s is not a spool segment", path)
	}
	var recs []*meteringv1.RecordUsageRequest
	var head [8]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return recs, nil
		}
		n := binary.BigEndian.Uint32(head[0:4])
		if n > maxFrameBytes {
			return recs, nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return recs, nil
		}
		if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(head[4:8]) {
			return recs, nil
		}
		rec := &meteringv1.RecordUsageRequest{}
		if err := proto.Unmarshal(payload, rec); err != nil {
			return recs, nil
		}
		recs = append(recs, rec)
	}
}

// syncDir fsyncs a directory, making file creations and removals in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
