package metering_test

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metering "github.com/metering-dev/metering/clients/go"
	"github.com/metering-dev/metering/clients/go/internal/testserver"
)

// TestChaos is the conformance README's chaos step: the server is killed
// while the Reporter sends N records, restarted on the same port and
// database, and afterwards the API shows exactly N records and N costs.
func TestChaos(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGKILL", syscall.SIGKILL}, {"SIGTERM", syscall.SIGTERM}} {
		t.Run(tc.name, func(t *testing.T) { chaos(t, tc.sig, 200) })
	}
}

func chaos(t *testing.T, sig syscall.Signal, n int) {
	srv := testserver.Start(t)
	c := newClient(t, srv.Addr, metering.Options{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	account := uniqueID("conf-") + "-chaos"
	createAccount(t, c, account)
	r := fastReporter(t, c, t.TempDir(), nil)

	var handed atomic.Int64
	reported := make(chan error, 1)
	go func() {
		for i := range n {
			if err := r.Report(usageRecord(account, fmt.Sprintf("chaos-%04d", i))); err != nil {
				reported <- err
				return
			}
			handed.Add(1)
			time.Sleep(15 * time.Millisecond)
		}
		reported <- nil
	}()

	for handed.Load() < int64(n/3) {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if sig == syscall.SIGKILL {
		srv.Kill()
	} else {
		srv.Terminate()
	}
	t.Logf("%v after %d records handed over", sig, handed.Load())
	time.Sleep(time.Second)
	srv.Restart()
	t.Logf("restarted after %v, %d records handed over", time.Since(start).Round(time.Millisecond), handed.Load())
	if err := <-reported; err != nil {
		t.Fatalf("Report: %v", err)
	}
	flushUntilDrained(t, r, 60*time.Second)
	if err := r.Close(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	t.Logf("drained %v after the kill; stats %+v", time.Since(start).Round(time.Millisecond), st)
	if st.Recorded != int64(n) || st.Rejected != 0 || st.SpoolLen != 0 {
		t.Errorf("stats %+v, want %d recorded", st, n)
	}

	tot := totals(t, c, account)
	if tot.GetRequestCount() != int64(n) || tot.GetInputTokens() != 1000*int64(n) || tot.GetOutputTokens() != 500*int64(n) {
		t.Fatalf("totals: %d records, %d input, %d output; want %d, %d, %d",
			tot.GetRequestCount(), tot.GetInputTokens(), tot.GetOutputTokens(), n, 1000*n, 500*n)
	}
	if b := balanceNanos(t, c, account); b != -int64(n)*usageRecordNanos {
		t.Fatalf("balance %d nanos, want %d", b, -int64(n)*usageRecordNanos)
	}
}
