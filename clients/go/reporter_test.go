package metering_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	metering "github.com/metering-dev/metering/clients/go"
	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
	"github.com/metering-dev/metering/clients/go/internal/testserver"
)

const batchMethod = "/metering.v1.MeteringService/RecordUsageBatch"

// fastReporter: short intervals so that tests do not wait.
func fastReporter(t testing.TB, c *metering.Client, dir string, mod func(*metering.ReporterOptions)) *metering.Reporter {
	t.Helper()
	opts := metering.ReporterOptions{
		SpoolDir:          dir,
		BatchSize:         10,
		FlushInterval:     20 * time.Millisecond,
		SendTimeout:       5 * time.Second,
		ReplayInterval:    100 * time.Millisecond,
		MaxReplayInterval: 500 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	r, err := metering.NewReporter(c, opts)
	if err != nil {
		t.Fatalf("NewReporter: %v", err)
	}
	return r
}

// flushUntilDrained calls Flush until nothing is left, for at most d.
func flushUntilDrained(t testing.TB, r *metering.Reporter, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := r.Flush(ctxT(t, 30*time.Second))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reporter not drained after %v: %v (stats %+v)", d, err, r.Stats())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func spoolSegments(t testing.TB, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

func TestReporterBatches(t *testing.T) {
	srv := testserver.Start(t)
	var seen attempts
	c := newClient(t, srv.Addr, metering.Options{DialOptions: []grpc.DialOption{seen.interceptor()}})
	account := uniqueID("rep-")
	createAccount(t, c, account)

	var mu sync.Mutex
	recorded := map[string]int{}
	r := fastReporter(t, c, t.TempDir(), func(o *metering.ReporterOptions) {
		o.BatchSize = 50
		o.FlushInterval = time.Hour // only full batches and Flush send
		o.OnRecorded = func(req *meteringv1.RecordUsageRequest, resp *meteringv1.RecordUsageResponse) {
			mu.Lock()
			recorded[req.GetRequestId()]++
			mu.Unlock()
		}
	})
	const n = 120
	for i := range n {
		if err := r.Report(usageRecord(account, fmt.Sprintf("b-%04d", i))); err != nil {
			t.Fatal(err)
		}
	}
	flushUntilDrained(t, r, 30*time.Second)
	if err := r.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Reported != n || st.Recorded != n || st.Spooled != 0 || st.Rejected != 0 || st.SpoolLen != 0 {
		t.Fatalf("stats %+v", st)
	}
	if len(recorded) != n {
		t.Fatalf("OnRecorded saw %d records, want %d", len(recorded), n)
	}
	// 120 records in batches of at most 50: 50, 50, 20.
	batches := seen.of(batchMethod)
	if len(batches) != 3 {
		t.Errorf("%d RecordUsageBatch calls, want 3", len(batches))
	}
	for _, b := range batches {
		for _, rec := range b.(*meteringv1.RecordUsageBatchRequest).GetRecords() {
			if rec.GetEventTime() == nil {
				t.Fatalf("record %s sent without event_time", rec.GetRequestId())
			}
		}
	}
	if tot := totals(t, c, account); tot.GetRequestCount() != n {
		t.Fatalf("%d records, want %d", tot.GetRequestCount(), n)
	}
	if err := r.Report(usageRecord(account, "late")); err != metering.ErrReporterClosed {
		t.Fatalf("Report after Close: %v", err)
	}
}

func TestReporterRejectsInvalidRecordLocally(t *testing.T) {
	r := fastReporter(t, newClient(t, "127.0.0.1:1", metering.Options{}), t.TempDir(), nil)
	defer r.Close(ctxT(t, 10*time.Second))
	err := r.Report(&meteringv1.RecordUsageRequest{Model: "gpt-4o-mini"})
	merr := metering.FromError(err)
	if merr == nil || merr.Code != codes.InvalidArgument || strings.Join(merr.Fields(), ",") != "account_id,request_id" {
		t.Fatalf("got %v", err)
	}
}

// TestReporterDeadLetters: a record the service refuses for good is not
// retried; it goes to OnRejected and rejected.jsonl.
func TestReporterDeadLetters(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.Addr, metering.Options{})
	account := uniqueID("dead-")
	createAccount(t, c, account)
	dir := t.TempDir()
	var mu sync.Mutex
	var rejected []*metering.Error
	r := fastReporter(t, c, dir, func(o *metering.ReporterOptions) {
		o.OnRejected = func(_ *meteringv1.RecordUsageRequest, e *metering.Error) {
			mu.Lock()
			rejected = append(rejected, e)
			mu.Unlock()
		}
	})
	bad := usageRecord(account, "unpriced")
	bad.Model, bad.Provider = "no-such-model", ""
	for _, rec := range []*meteringv1.RecordUsageRequest{usageRecord(account, "ok"), bad} {
		if err := r.Report(rec); err != nil {
			t.Fatal(err)
		}
	}
	flushUntilDrained(t, r, 30*time.Second)
	if err := r.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Recorded != 1 || st.Rejected != 1 || st.SpoolLen != 0 {
		t.Fatalf("stats %+v", st)
	}
	if len(rejected) != 1 || rejected[0].Reason != metering.ReasonPriceNotFound || rejected[0].Code != codes.FailedPrecondition {
		t.Fatalf("rejected %v", rejected)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "rejected.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var line struct {
		Code, Reason string
		Request      struct{ RequestID string }
	}
	if err := json.Unmarshal(raw, &line); err != nil {
		t.Fatalf("rejected.jsonl %q: %v", raw, err)
	}
	if line.Code != "FAILED_PRECONDITION" || line.Reason != "PRICE_NOT_FOUND" || line.Request.RequestID != "unpriced" {
		t.Fatalf("rejected.jsonl: %s", raw)
	}
}

// TestReporterSpoolSurvivesRestart: records reported while the service is
// down are spooled; a new Reporter on the same directory (a restarted
// relay) replays them once the service is back, even with a torn tail.
func TestReporterSpoolSurvivesRestart(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.Addr, metering.Options{InitialBackoff: 10 * time.Millisecond, MaxAttempts: 3})
	account := uniqueID("spool-")
	createAccount(t, c, account)
	srv.Kill()

	dir := t.TempDir()
	const n = 50
	first := fastReporter(t, c, dir, nil)
	if _, err := metering.NewReporter(c, metering.ReporterOptions{SpoolDir: dir}); err == nil {
		t.Fatal("a second Reporter on the same spool directory was allowed")
	}
	for i := range n {
		if err := first.Report(usageRecord(account, fmt.Sprintf("s-%04d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Flush(ctxT(t, 30*time.Second)); err == nil {
		t.Fatal("Flush with the service down reported nothing left")
	}
	if err := first.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := first.Stats(); st.SpoolLen != n || st.Recorded != 0 {
		t.Fatalf("after close: %+v, want %d spooled", st, n)
	}
	segs := spoolSegments(t, dir)
	if len(segs) == 0 {
		t.Fatal("no spool segment on disk")
	}
	// A crash in the middle of an append leaves a torn frame at the tail.
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{0, 0, 1, 0, 0xde, 0xad}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	srv.Restart()
	second := fastReporter(t, c, dir, nil)
	if st := second.Stats(); st.SpoolLen != n {
		t.Fatalf("new reporter found %d spooled records, want %d", st.SpoolLen, n)
	}
	flushUntilDrained(t, second, 30*time.Second)
	if err := second.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := second.Stats(); st.Recorded != n || st.SpoolLen != 0 {
		t.Fatalf("second reporter: %+v", st)
	}
	if segs := spoolSegments(t, dir); len(segs) != 0 {
		t.Fatalf("segments left: %v", segs)
	}
	if tot := totals(t, c, account); tot.GetRequestCount() != n {
		t.Fatalf("%d records, want %d", tot.GetRequestCount(), n)
	}
	if b := balanceNanos(t, c, account); b != -n*usageRecordNanos {
		t.Fatalf("balance %d nanos, want %d", b, -n*usageRecordNanos)
	}
}

// TestReporterSurvivesKill: a relay process whose Reporter found the
// service down is killed (SIGKILL, no Close); every record Report had
// returned for is replayed by the next process.
func TestReporterSurvivesKill(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.Addr, metering.Options{})
	account := uniqueID("kill-")
	createAccount(t, c, account)
	srv.Kill()

	dir := t.TempDir()
	const n = 40
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(),
		"METERING_TEST_CHILD=1", "CHILD_ADDR="+srv.Addr, "CHILD_DIR="+dir,
		"CHILD_ACCOUNT="+account, "CHILD_N="+strconv.Itoa(n))
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "REPORTED ") {
				done <- sc.Text()
			}
		}
	}()
	select {
	case line := <-done:
		t.Logf("child: %s", line)
	case <-time.After(60 * time.Second):
		_ = child.Process.Kill()
		t.Fatal("child did not report")
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	srv.Restart()
	r := fastReporter(t, c, dir, nil)
	flushUntilDrained(t, r, 30*time.Second)
	if err := r.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if tot := totals(t, c, account); tot.GetRequestCount() != n {
		t.Fatalf("%d records, want %d", tot.GetRequestCount(), n)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv("METERING_TEST_CHILD") == "1" {
		reporterChild()
		return
	}
	os.Exit(m.Run())
}

// reporterChild is the relay process of TestReporterSurvivesKill.
func reporterChild() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	n, _ := strconv.Atoi(os.Getenv("CHILD_N"))
	account := os.Getenv("CHILD_ACCOUNT")
	c, err := metering.New(os.Getenv("CHILD_ADDR"), metering.Options{InitialBackoff: 10 * time.Millisecond, MaxAttempts: 2})
	if err != nil {
		fail(err)
	}
	r, err := metering.NewReporter(c, metering.ReporterOptions{SpoolDir: os.Getenv("CHILD_DIR"), FlushInterval: 10 * time.Millisecond})
	if err != nil {
		fail(err)
	}
	// The first record finds the service down: the Reporter spools it and
	// goes offline (Flush returns once that happened).
	if err := r.Report(usageRecord(account, "k-0000")); err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Flush(ctx); err == nil {
		fail(errors.New("service reachable?"))
	}
	// Offline, each Report returns once its record is on disk.
	for i := 1; i < n; i++ {
		if err := r.Report(usageRecord(account, fmt.Sprintf("k-%04d", i))); err != nil {
			fail(err)
		}
	}
	fmt.Printf("REPORTED %d spooled=%d\n", n, r.Stats().SpoolLen)
	time.Sleep(time.Minute) // killed here, without Close
	fail(errors.New("not killed"))
}

// TestReporterCloseWithFrozenService: Close does not wait past its context
// for a service that does not answer (SIGSTOP); the records in flight are
// spooled, and once the service thaws a new Reporter delivers them, the
// ones the service had already taken as replays: exactly once.
func TestReporterCloseWithFrozenService(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.Addr, metering.Options{})
	account := uniqueID("frozen-")
	createAccount(t, c, account)
	dir := t.TempDir()
	r := fastReporter(t, c, dir, func(o *metering.ReporterOptions) { o.FlushInterval = time.Hour })
	const n = 25
	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := r.Report(usageRecord(account, fmt.Sprintf("f-%04d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Two full batches of 10 went out to the frozen server; 5 wait in memory.
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := r.Close(ctxT(t, 500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v with a 500ms context", d)
	}
	if st := r.Stats(); st.SpoolLen != n {
		t.Fatalf("after Close: %+v, want all %d spooled", st, n)
	}
	if err := srv.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	r2 := fastReporter(t, c, dir, nil)
	flushUntilDrained(t, r2, 30*time.Second)
	if err := r2.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Logf("replay: %+v", r2.Stats())
	if tot := totals(t, c, account); tot.GetRequestCount() != n {
		t.Fatalf("%d records, want %d", tot.GetRequestCount(), n)
	}
	if b := balanceNanos(t, c, account); b != -n*usageRecordNanos {
		t.Fatalf("balance %d nanos, want %d", b, -n*usageRecordNanos)
	}
}
