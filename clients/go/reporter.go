package metering

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
)

// Defaults of ReporterOptions.
const (
	DefaultBatchSize         = 100
	DefaultBatchBytes        = 2 << 20
	DefaultFlushInterval     = 200 * time.Millisecond
	DefaultQueueSize         = 10000
	DefaultSendTimeout       = 10 * time.Second
	DefaultReplayInterval    = time.Second
	DefaultMaxReplayInterval = 30 * time.Second
	maxBatchRecords          = 1000
)

// ErrReporterClosed is returned by Report after Close.
var ErrReporterClosed = errors.New("metering: reporter closed")

// ReporterOptions configure a Reporter.
type ReporterOptions struct {
	// SpoolDir is the directory of the durable spool (created if missing).
	// Required. One Reporter at a time may use it (a lock file says so);
	// give each relay process its own directory on local disk, and keep it
	// across restarts: a new Reporter replays what the last one left.
	SpoolDir string
	// BatchSize is the most records per RecordUsageBatch call (at most
	// 1000; default 100); BatchBytes the most bytes of records (default
	// 2 MiB, under the service's 4 MiB message limit).
	BatchSize  int
	BatchBytes int
	// FlushInterval is how long a record may wait in memory for its batch
	// to fill (default 200ms).
	FlushInterval time.Duration
	// QueueSize bounds the records waiting in memory (default 10000); a
	// Report that finds the queue full writes to the spool itself.
	QueueSize int
	// SendTimeout bounds one batch call, the client's retries included
	// (default 10s). Then the batch is spooled.
	SendTimeout time.Duration
	// ReplayInterval is the wait before the spool is first tried again after
	// a failure (default 1s); it doubles, jittered, up to MaxReplayInterval
	// (default 30s) while the service stays unreachable.
	ReplayInterval    time.Duration
	MaxReplayInterval time.Duration
	// OnRejected, if set, is called for each record the service refused for
	// good (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
	// ALREADY_EXISTS...). Such a record is also appended to
	// <SpoolDir>/rejected.jsonl, so it is never silently lost.
	OnRejected func(*meteringv1.RecordUsageRequest, *Error)
	// OnRecorded, if set, is called with each record the service
	// acknowledged (e.g. to stop an account whose balance_exhausted).
	OnRecorded func(*meteringv1.RecordUsageRequest, *meteringv1.RecordUsageResponse)
	// Logger; default slog.Default().
	Logger *slog.Logger
}

func (o ReporterOptions) withDefaults() ReporterOptions {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	o.BatchSize = min(o.BatchSize, maxBatchRecords)
	if o.BatchBytes <= 0 {
		o.BatchBytes = DefaultBatchBytes
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = DefaultSendTimeout
	}
	if o.ReplayInterval <= 0 {
		o.ReplayInterval = DefaultReplayInterval
	}
	if o.MaxReplayInterval <= 0 {
		o.MaxReplayInterval = DefaultMaxReplayInterval
	}
	o.MaxReplayInterval = max(o.MaxReplayInterval, o.ReplayInterval)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ReporterStats are a Reporter's counters since it was made.
type ReporterStats struct {
	// Reported is the number of records Report accepted.
	Reported int64
	// Recorded is the number the service acknowledged (Duplicates
	// included): each is in the ledger exactly once.
	Recorded int64
	// Duplicates were acknowledged with replayed = true: sent before, by
	// this process or the one before it, whose answer was lost.
	Duplicates int64
	// Rejected were refused for good (see ReporterOptions.OnRejected).
	Rejected int64
	// Spooled is the number of records written to the spool.
	Spooled int64
	// Queued is the number of records in memory now; SpoolLen the number
	// in the spool now.
	Queued   int
	SpoolLen int
}

// Reporter records usage in the background: Report queues a stream-end
// RecordUsage and returns at once; batches of records go out as
// RecordUsageBatch calls. When the service cannot be reached (or a call
// fails temporarily), the records are appended to a local append-only spool
// and fsynced, and the Reporter switches to spooling every new record
// directly (Report then returns once the record is on disk) until a replay
// of the spool succeeds. The spool outlives the process: a Reporter made on
// the same directory after a restart replays it. Every record keeps its
// request_id and event_time, so a record the service already has is
// answered as a replay and counted once.
//
// Close sends or spools everything still in memory. A record is durable once
// Report returned while the service was unreachable, or once the service
// acknowledged it; what a process killed outright (SIGKILL, power loss) had
// only in memory — at most FlushInterval plus one call's worth — is lost.
type Reporter struct {
	c     *Client
	opts  ReporterOptions
	spool *spool
	log   *slog.Logger

	queue   chan *meteringv1.RecordUsageRequest
	flushCh chan chan error
	done    chan struct{} // closed by Close to stop the loop
	stopped chan struct{} // closed when the loop has returned

	mu      sync.RWMutex // held for reading by Report, for writing by Close
	closed  bool
	offline atomic.Bool

	ctx      context.Context // the loop's calls; cancelled when Close's ctx is done
	cancel   context.CancelFunc
	closeErr error

	// Owned by the loop goroutine.
	batch      []*meteringv1.RecordUsageRequest
	batchBytes int
	flushTimer *time.Timer

	reported, recorded, duplicates, rejected, spooled atomic.Int64
}

// NewReporter opens the spool and starts sending. If the spool holds
// records of an earlier process, they are replayed at once.
func NewReporter(c *Client, opts ReporterOptions) (*Reporter, error) {
	if opts.SpoolDir == "" {
		return nil, errors.New("metering: ReporterOptions.SpoolDir is required")
	}
	opts = opts.withDefaults()
	sp, err := openSpool(opts.SpoolDir)
	if err != nil {
		return nil, err
	}
	r := &Reporter{
		c:       c,
		opts:    opts,
		spool:   sp,
		log:     opts.Logger,
		queue:   make(chan *meteringv1.RecordUsageRequest, opts.QueueSize),
		flushCh: make(chan chan error),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if n := sp.Len(); n > 0 {
		r.log.Info("metering: replaying spooled usage records", "records", n, "dir", opts.SpoolDir)
	}
	go r.loop()
	return r, nil
}

// Report queues one record. The request is copied; its event_time is set
// to now when unset, so that a record sent late is priced at the time of
// the call. account_id and request_id are required (an *Error with code
// INVALID_ARGUMENT otherwise). The error is nil once the record is queued
// or spooled; records the service refuses later go to OnRejected.
func (r *Reporter) Report(req *meteringv1.RecordUsageRequest) error {
	var missing []FieldViolation
	if req.GetAccountId() == "" {
		missing = append(missing, FieldViolation{"account_id", "account_id is required"})
	}
	if req.GetRequestId() == "" {
		missing = append(missing, FieldViolation{"request_id", "request_id is required (the idempotency key)"})
	}
	if missing != nil {
		return &Error{Code: codes.InvalidArgument, Message: "invalid record", Reason: ReasonInvalidArgument, FieldViolations: missing}
	}
	rec := proto.Clone(req).(*meteringv1.RecordUsageRequest)
	if rec.EventTime == nil {
		rec.EventTime = timestamppb.Now()
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ErrReporterClosed
	}
	r.reported.Add(1)
	if !r.offline.Load() {
		select {
		case r.queue <- rec:
			return nil
		default: // full: spool it ourselves
		}
	}
	return r.spoolRecords([]*meteringv1.RecordUsageRequest{rec})
}

func (r *Reporter) spoolRecords(recs []*meteringv1.RecordUsageRequest) error {
	if err := r.spool.Append(recs); err != nil {
		r.log.Error("metering: cannot spool usage records", "records", len(recs), "err", err)
		return err
	}
	r.spooled.Add(int64(len(recs)))
	return nil
}

// Flush sends everything queued and tries the spool once. It returns nil
// when nothing is left in memory or on disk, else an error (the records
// stay spooled and are retried in the background).
func (r *Reporter) Flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case r.flushCh <- reply:
	case <-r.stopped:
		return ErrReporterClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the Reporter: records still in memory are sent (or spooled,
// when the service does not answer before ctx is done or SendTimeout),
// then the spool is closed. It returns an error only if a record could be
// neither sent nor spooled.
func (r *Reporter) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		<-r.stopped
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	close(r.done)
	// A call in progress when ctx ends is abandoned: its records are spooled.
	select {
	case <-r.stopped:
	case <-ctx.Done():
		r.cancel()
		<-r.stopped
	}
	r.cancel()
	return errors.Join(r.closeErr, r.spool.Close())
}

// Stats returns the Reporter's counters.
func (r *Reporter) Stats() ReporterStats {
	return ReporterStats{
		Reported:   r.reported.Load(),
		Recorded:   r.recorded.Load(),
		Duplicates: r.duplicates.Load(),
		Rejected:   r.rejected.Load(),
		Spooled:    r.spooled.Load(),
		Queued:     len(r.queue),
		SpoolLen:   r.spool.Len(),
	}
}

// loop batches the queue, sends, spools on failure and replays the spool.
func (r *Reporter) loop() {
	defer close(r.stopped)
	ctx := r.ctx
	r.flushTimer = time.NewTimer(time.Hour)
	r.flushTimer.Stop()
	replayDelay := r.opts.ReplayInterval
	replayTimer := time.NewTimer(0) // at once: replay what an earlier process left
	replay := func() {
		if r.replay(ctx) {
			replayDelay = r.opts.ReplayInterval
		} else {
			replayDelay = jittered(2*replayDelay, r.opts.MaxReplayInterval, 1)
		}
		replayTimer.Reset(replayDelay)
	}
	for {
		select {
		case rec := <-r.queue:
			r.add(ctx, rec)
		case <-r.flushTimer.C:
			r.flush(ctx)
		case <-replayTimer.C:
			replay()
		case reply := <-r.flushCh:
			err := r.drain(ctx)
			replayTimer.Stop()
			replay()
			if err == nil && r.spool.Len() > 0 {
				err = errors.New("metering: usage records remain spooled (service unreachable)")
			}
			reply <- err
		case <-r.done:
			r.closeErr = r.drain(ctx)
			return
		}
	}
}

// add puts a record into the current batch, sending the batch when full.
func (r *Reporter) add(ctx context.Context, rec *meteringv1.RecordUsageRequest) error {
	var err error
	size := proto.Size(rec)
	if len(r.batch) > 0 && r.batchBytes+size > r.opts.BatchBytes {
		err = r.flush(ctx)
	}
	if len(r.batch) == 0 {
		r.flushTimer.Reset(r.opts.FlushInterval)
	}
	r.batch = append(r.batch, rec)
	r.batchBytes += size
	if len(r.batch) >= r.opts.BatchSize {
		err = errors.Join(err, r.flush(ctx))
	}
	return err
}

// flush delivers the current batch.
func (r *Reporter) flush(ctx context.Context) error {
	r.flushTimer.Stop()
	if len(r.batch) == 0 {
		return nil
	}
	batch := r.batch
	r.batch, r.batchBytes = nil, 0
	return r.deliver(ctx, batch)
}

// drain delivers everything queued and the current batch.
func (r *Reporter) drain(ctx context.Context) error {
	var err error
	for {
		select {
		case rec := <-r.queue:
			err = errors.Join(err, r.add(ctx, rec))
			continue
		default:
		}
		return errors.Join(err, r.flush(ctx))
	}
}

// deliver sends records, or spools them when the service is unreachable.
// The error is that of the spool: nil means every record is acknowledged,
// refused for good (and dead-lettered) or on disk.
func (r *Reporter) deliver(ctx context.Context, recs []*meteringv1.RecordUsageRequest) error {
	if r.offline.Load() || ctx.Err() != nil {
		return r.spoolRecords(recs)
	}
	retry := r.send(ctx, recs)
	if len(retry) == 0 {
		return nil
	}
	if !r.offline.Swap(true) {
		r.log.Warn("metering: service unreachable, spooling usage records", "dir", r.opts.SpoolDir)
	}
	return r.spoolRecords(retry)
}

// replay sends the spool's sealed segments. It reports whether the spool
// was emptied with no temporary failure (the service is reachable).
func (r *Reporter) replay(ctx context.Context) bool {
	if r.spool.Len() == 0 {
		r.offline.Store(false)
		return true
	}
	names, err := r.spool.Seal()
	if err != nil {
		r.log.Error("metering: cannot list the spool", "dir", r.opts.SpoolDir, "err", err)
		return false
	}
	sent := 0
	for _, name := range names {
		recs, err := r.spool.Read(name)
		if err != nil {
			r.log.Error("metering: unreadable spool segment left in place", "segment", name, "err", err)
			continue
		}
		retry := r.send(ctx, recs)
		if len(retry) > 0 {
			// Still unreachable: what was not acknowledged moves to the active
			// segment (durably) before the sealed one goes.
			if err := r.spool.Append(retry); err != nil {
				r.log.Error("metering: cannot re-spool usage records", "err", err)
				return false
			}
		}
		if err := r.spool.Remove(name); err != nil {
			r.log.Error("metering: cannot remove a replayed spool segment", "segment", name, "err", err)
			return false
		}
		sent += len(recs) - len(retry)
		if len(retry) > 0 {
			r.offline.Store(true)
			return false
		}
	}
	if r.offline.Swap(false) || sent > 0 {
		r.log.Info("metering: service reachable, spool replayed", "records", sent)
	}
	return true
}

// send sends records in batches and returns those to try again later:
// everything from the first batch the service did not answer on, plus any
// record that failed temporarily.
func (r *Reporter) send(ctx context.Context, recs []*meteringv1.RecordUsageRequest) []*meteringv1.RecordUsageRequest {
	var retry []*meteringv1.RecordUsageRequest
	for start := 0; start < len(recs); {
		end, size := start, 0
		for end < len(recs) && end-start < r.opts.BatchSize {
			n := proto.Size(recs[end])
			if end > start && size+n > r.opts.BatchBytes {
				break
			}
			size += n
			end++
		}
		chunkRetry, unreachable := r.sendBatch(ctx, recs[start:end])
		retry = append(retry, chunkRetry...)
		if unreachable {
			return append(retry, recs[end:]...)
		}
		start = end
	}
	return retry
}

// sendBatch sends one RecordUsageBatch. unreachable means the call itself
// failed temporarily (every record is returned for retry).
func (r *Reporter) sendBatch(ctx context.Context, chunk []*meteringv1.RecordUsageRequest) (retry []*meteringv1.RecordUsageRequest, unreachable bool) {
	cctx, cancel := context.WithTimeout(ctx, r.opts.SendTimeout)
	defer cancel()
	resp, err := r.c.RecordUsageBatch(cctx, &meteringv1.RecordUsageBatchRequest{Records: chunk})
	if err != nil {
		merr := FromError(err)
		if merr.Temporary() {
			return chunk, true
		}
		// The batch as a whole was refused (too large, say): one by one, so
		// that each record gets its own answer.
		r.log.Warn("metering: batch refused, sending its records one by one", "records", len(chunk), "err", merr)
		for i, rec := range chunk {
			resp, err := r.c.RecordUsage(cctx, rec)
			if err == nil {
				r.acknowledged(rec, resp)
				continue
			}
			merr := FromError(err)
			if merr.Temporary() {
				return append(retry, chunk[i:]...), true
			}
			r.reject(rec, merr)
		}
		return retry, false
	}
	results := resp.GetResults()
	for i, rec := range chunk {
		var res *meteringv1.RecordUsageResult
		if i < len(results) {
			res = results[i]
		}
		switch {
		case res.GetResponse() != nil:
			r.acknowledged(rec, res.GetResponse())
		case res.GetError() != nil && !FromRecordError(res.GetError()).Temporary():
			r.reject(rec, FromRecordError(res.GetError()))
		default:
			retry = append(retry, rec)
		}
	}
	return retry, false
}

func (r *Reporter) acknowledged(rec *meteringv1.RecordUsageRequest, resp *meteringv1.RecordUsageResponse) {
	r.recorded.Add(1)
	if resp.GetReplayed() {
		r.duplicates.Add(1)
	}
	if r.opts.OnRecorded != nil {
		r.opts.OnRecorded(rec, resp)
	}
}

// rejectedLine is one line of rejected.jsonl.
type rejectedLine struct {
	Time    time.Time       `json:"time"`
	Code    string          `json:"code"`
	Reason  string          `json:"reason,omitempty"`
	Message string          `json:"message,omitempty"`
	Fields  []string        `json:"fields,omitempty"`
	Request json.RawMessage `json:"request"`
}

func (r *Reporter) reject(rec *meteringv1.RecordUsageRequest, e *Error) {
	r.rejected.Add(1)
	r.log.Error("metering: usage record refused", "account_id", rec.GetAccountId(),
		"request_id", rec.GetRequestId(), "err", e)
	body, err := protojson.Marshal(rec)
	if err == nil {
		var line []byte
		line, err = json.Marshal(rejectedLine{
			Time: time.Now().UTC(), Code: CodeName(e.Code), Reason: e.Reason,
			Message: e.Message, Fields: e.Fields(), Request: body,
		})
		if err == nil {
			err = r.spool.AppendRejected(line)
		}
	}
	if err != nil {
		r.log.Error("metering: cannot write rejected.jsonl", "err", err)
	}
	if r.opts.OnRejected != nil {
		r.opts.OnRejected(rec, e)
	}
}
