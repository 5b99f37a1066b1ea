package metering

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
)

func TestJitteredBackoff(t *testing.T) {
	initial, maxDelay := 100*time.Millisecond, time.Second
	for attempt := 1; attempt <= 10; attempt++ {
		full := min(initial<<(attempt-1), maxDelay)
		for range 200 {
			d := jittered(initial, maxDelay, attempt)
			if d < full/2 || d > full {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, full/2, full)
			}
		}
	}
}

func rec(i int) *meteringv1.RecordUsageRequest {
	return &meteringv1.RecordUsageRequest{AccountId: "a", RequestId: fmt.Sprintf("r-%05d", i), Model: "m",
		Usage: &meteringv1.TokenUsage{InputTokens: int64(i)}}
}

func TestSpoolAppendSealReadRemove(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Concurrent appends share fsyncs and lose nothing.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				if err := s.Append([]*meteringv1.RecordUsageRequest{rec(g*100 + i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if s.Len() != 200 {
		t.Fatalf("Len %d", s.Len())
	}
	names, err := s.Seal()
	if err != nil || len(names) != 1 {
		t.Fatalf("Seal: %v %v", names, err)
	}
	if err := s.Append([]*meteringv1.RecordUsageRequest{rec(999)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(names[0])
	if err != nil || len(got) != 200 {
		t.Fatalf("Read: %d records, %v", len(got), err)
	}
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.GetRequestId()] = true
	}
	if len(seen) != 200 {
		t.Fatalf("%d distinct records", len(seen))
	}
	if err := s.Remove(names[0]); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 1 {
		t.Fatalf("Len after remove %d", s.Len())
	}
	if _, err := openSpool(dir); err == nil {
		t.Fatal("second open of a locked spool succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: the record appended after the seal is there, in a newer segment.
	s2, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Len() != 1 {
		t.Fatalf("reopened Len %d", s2.Len())
	}
	names2, _ := s2.Seal()
	if len(names2) != 1 || names2[0] <= names[0] {
		t.Fatalf("segments %v after %v", names2, names)
	}
	if err := s2.Append([]*meteringv1.RecordUsageRequest{rec(1000)}); err != nil {
		t.Fatal(err)
	}
	names3, _ := s2.Seal()
	if len(names3) != 2 || names3[1] <= names2[0] {
		t.Fatalf("new segment not after the old ones: %v", names3)
	}
}

func TestSpoolTornAndCorruptTails(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]*meteringv1.RecordUsageRequest{rec(1), rec(2), rec(3)}); err != nil {
		t.Fatal(err)
	}
	names, _ := s.Seal()
	s.Close()
	path := filepath.Join(dir, names[0])
	whole, _ := os.ReadFile(path)

	for name, content := range map[string][]byte{
		"torn header":  append(append([]byte{}, whole...), 0, 0, 0),
		"torn payload": append(append([]byte{}, whole...), 0, 0, 0, 50, 1, 2, 3, 4, 9, 9),
		"bad checksum": func() []byte {
			b := append([]byte{}, whole...)
			b[len(b)-1] ^= 0xff // last record's payload
			return b
		}(),
	} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readSegment(path)
		want := 3
		if name == "bad checksum" {
			want = 2
		}
		if err != nil || len(got) != want {
			t.Errorf("%s: %d records, %v; want %d", name, len(got), err, want)
		}
		for i, r := range got {
			if !proto.Equal(r, rec(i+1)) {
				t.Errorf("%s: record %d = %v", name, i, r)
			}
		}
	}
	if err := os.WriteFile(path, []byte("something else"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSegment(path); err == nil {
		t.Error("a foreign file was read as a segment")
	}
}
