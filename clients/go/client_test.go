package metering_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	metering "github.com/metering-dev/metering/clients/go"
	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
	"github.com/metering-dev/metering/clients/go/internal/testserver"
)

const recordUsageMethod = "/metering.v1.MeteringService/RecordUsage"

func TestTypedErrors(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.Addr, metering.Options{})
	account := uniqueID("err-")
	createAccount(t, c, account)
	ctx := ctxT(t, 30*time.Second)

	t.Run("invalid argument names every field", func(t *testing.T) {
		_, err := c.RecordUsage(ctx, &meteringv1.RecordUsageRequest{
			Usage: &meteringv1.TokenUsage{InputTokens: -1},
		})
		var merr *metering.Error
		if !errors.As(err, &merr) {
			t.Fatalf("error %T %v is not a *metering.Error", err, err)
		}
		if merr.Code != codes.InvalidArgument || merr.Reason != metering.ReasonInvalidArgument || merr.Domain != metering.ErrorDomain {
			t.Fatalf("got %v (domain %q)", merr, merr.Domain)
		}
		want := []string{"account_id", "request_id", "model", "usage.input_tokens"}
		if got := merr.Fields(); !slices.Equal(got, want) {
			t.Fatalf("fields %q, want %q", got, want)
		}
		for _, v := range merr.FieldViolations {
			if v.Description == "" {
				t.Errorf("field %s has no description", v.Field)
			}
		}
		if merr.Temporary() {
			t.Error("INVALID_ARGUMENT reported as temporary")
		}
		// The gRPC status survives the conversion.
		if status.Code(err) != codes.InvalidArgument || metering.CodeOf(err) != codes.InvalidArgument {
			t.Errorf("status.Code = %v, CodeOf = %v", status.Code(err), metering.CodeOf(err))
		}
		if len(status.Convert(err).Details()) != 2 {
			t.Errorf("status details %v, want ErrorInfo and BadRequest", status.Convert(err).Details())
		}
	})

	t.Run("not found", func(t *testing.T) {
		_, err := c.GetBalance(ctx, &meteringv1.GetBalanceRequest{AccountId: account + "-missing"})
		if metering.CodeOf(err) != codes.NotFound || metering.ReasonOf(err) != metering.ReasonAccountNotFound {
			t.Fatalf("got %v", err)
		}
		if got := err.Error(); got != "metering: NOT_FOUND (ACCOUNT_NOT_FOUND): "+metering.FromError(err).Message {
			t.Errorf("Error() = %q", got)
		}
	})

	t.Run("price not found", func(t *testing.T) {
		req := usageRecord(account, "unpriced-1")
		req.Model, req.Provider = "no-such-model", ""
		_, err := c.RecordUsage(ctx, req)
		if metering.CodeOf(err) != codes.FailedPrecondition || metering.ReasonOf(err) != metering.ReasonPriceNotFound {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("request id conflict", func(t *testing.T) {
		req := usageRecord(account, "conflict-1")
		if _, err := c.RecordUsage(ctx, req); err != nil {
			t.Fatal(err)
		}
		req.Usage.OutputTokens++
		_, err := c.RecordUsage(ctx, req)
		if metering.CodeOf(err) != codes.AlreadyExists || metering.ReasonOf(err) != metering.ReasonRequestIDConflict {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("account already exists", func(t *testing.T) {
		_, err := c.CreateAccount(ctx, &meteringv1.CreateAccountRequest{AccountId: account})
		if metering.CodeOf(err) != codes.AlreadyExists || metering.ReasonOf(err) != metering.ReasonAccountAlreadyExists {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("batch record errors", func(t *testing.T) {
		bad := usageRecord(account, "batch-bad")
		bad.Usage.InputTokens = -1
		resp, err := c.RecordUsageBatch(ctx, &meteringv1.RecordUsageBatchRequest{
			Records: []*meteringv1.RecordUsageRequest{usageRecord(account, "batch-ok"), bad},
		})
		if err != nil {
			t.Fatal(err)
		}
		if metering.FromRecordError(resp.GetResults()[0].GetError()) != nil {
			t.Fatalf("first record failed: %v", resp.GetResults()[0])
		}
		merr := metering.FromRecordError(resp.GetResults()[1].GetError())
		if merr == nil || merr.Code != codes.InvalidArgument || !slices.Equal(merr.Fields(), []string{"records[1].usage.input_tokens"}) {
			t.Fatalf("second record: %v fields %q", merr, merr.Fields())
		}
	})

	t.Run("deadline", func(t *testing.T) {
		short, cancel := context.WithTimeout(context.Background(), time.Microsecond)
		defer cancel()
		time.Sleep(time.Millisecond)
		_, err := c.GetBalance(short, &meteringv1.GetBalanceRequest{AccountId: account})
		if metering.CodeOf(err) != codes.DeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.GetBalance(cctx, &meteringv1.GetBalanceRequest{AccountId: account})
		if metering.CodeOf(err) != codes.Canceled || !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("unavailable", func(t *testing.T) {
		var retries []metering.RetryInfo
		dead := newClient(t, "127.0.0.1:"+strconv.Itoa(testserver.FreePort(t)), metering.Options{
			MaxAttempts: 3, InitialBackoff: time.Millisecond,
			OnRetry: func(ri metering.RetryInfo) { retries = append(retries, ri) },
		})
		_, err := dead.GetBalance(ctx, &meteringv1.GetBalanceRequest{AccountId: account})
		merr := metering.FromError(err)
		if merr == nil || merr.Code != codes.Unavailable || !merr.Temporary() {
			t.Fatalf("got %v", err)
		}
		if len(retries) != 2 || retries[0].Attempt != 1 || retries[1].Attempt != 2 ||
			retries[0].Method != "/metering.v1.MeteringService/GetBalance" {
			t.Fatalf("retries %+v, want attempts 1 and 2 retried", retries)
		}
	})
}

// TestNoRetryOnPermanentErrors: a refused call is sent once.
func TestNoRetryOnPermanentErrors(t *testing.T) {
	srv := testserver.Start(t)
	var seen attempts
	c := newClient(t, srv.Addr, metering.Options{DialOptions: []grpc.DialOption{seen.interceptor()}})
	_, err := c.RecordUsage(ctxT(t, 10*time.Second), usageRecord(uniqueID("missing-"), "r1"))
	if metering.CodeOf(err) != codes.NotFound {
		t.Fatalf("got %v", err)
	}
	if n := len(seen.of(recordUsageMethod)); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

// TestCreateAccountIsNotRetried: CreateAccount is not idempotent, so an
// unreachable service fails it at once.
func TestCreateAccountIsNotRetried(t *testing.T) {
	var seen attempts
	c := newClient(t, "127.0.0.1:"+strconv.Itoa(testserver.FreePort(t)), metering.Options{
		DialOptions: []grpc.DialOption{seen.interceptor()},
	})
	_, err := c.CreateAccount(ctxT(t, 10*time.Second), &meteringv1.CreateAccountRequest{AccountId: "x"})
	if metering.CodeOf(err) != codes.Unavailable {
		t.Fatalf("got %v", err)
	}
	if n := len(seen.of("/metering.v1.MeteringAdminService/CreateAccount")); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

// checkSameRequestID fails unless every attempt sent the same request.
func checkSameRequestID(t *testing.T, seen *attempts, want *meteringv1.RecordUsageRequest, minAttempts int) {
	t.Helper()
	sent := seen.of(recordUsageMethod)
	if len(sent) < minAttempts {
		t.Fatalf("%d attempts, want at least %d", len(sent), minAttempts)
	}
	for i, m := range sent {
		req := m.(*meteringv1.RecordUsageRequest)
		if req.GetRequestId() != want.GetRequestId() || !proto.Equal(req, want) {
			t.Fatalf("attempt %d sent %v, want %v", i+1, req, want)
		}
	}
	t.Logf("%d attempts, all with request_id %s", len(sent), want.GetRequestId())
}

// TestRetryAcrossServerRestart: the service is down when RecordUsage is
// called (UNAVAILABLE) and comes back on the same port; the call succeeds
// with the same request_id, recorded once.
func TestRetryAcrossServerRestart(t *testing.T) {
	srv := testserver.Start(t)
	var seen attempts
	var mu sync.Mutex
	var retried []codes.Code
	c := newClient(t, srv.Addr, metering.Options{
		CallTimeout: 30 * time.Second, MaxAttempts: 100, MaxBackoff: 200 * time.Millisecond,
		DialOptions: []grpc.DialOption{seen.interceptor()},
		OnRetry: func(ri metering.RetryInfo) {
			mu.Lock()
			retried = append(retried, ri.Err.Code)
			mu.Unlock()
		},
	})
	account := uniqueID("retry-")
	createAccount(t, c, account)

	srv.Kill()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		restarted <- srv.TryRestart()
	}()
	req := usageRecord(account, "retry-across-restart")
	resp, err := c.RecordUsage(ctxT(t, 60*time.Second), req)
	if rerr := <-restarted; rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	checkSameRequestID(t, &seen, req, 2)
	mu.Lock()
	if len(retried) == 0 || retried[0] != codes.Unavailable {
		t.Errorf("retried on %v, want UNAVAILABLE first", retried)
	}
	mu.Unlock()
	if resp.GetCost().GetNanos() != usageRecordNanos {
		t.Errorf("cost %v", resp.GetCost())
	}
	if tot := totals(t, c, account); tot.GetRequestCount() != 1 {
		t.Fatalf("%d records, want 1", tot.GetRequestCount())
	}
	if b := balanceNanos(t, c, account); b != -usageRecordNanos {
		t.Fatalf("balance %d nanos, want %d", b, -usageRecordNanos)
	}
}

// TestRetryAfterAttemptDeadline: the server is frozen (SIGSTOP) while
// RecordUsage's attempts time out, then thaws and answers every queued
// attempt; all carried one request_id, so it is recorded exactly once.
func TestRetryAfterAttemptDeadline(t *testing.T) {
	srv := testserver.Start(t)
	var seen attempts
	var mu sync.Mutex
	var retried []codes.Code
	c := newClient(t, srv.Addr, metering.Options{
		CallTimeout: 30 * time.Second, AttemptTimeout: 300 * time.Millisecond,
		MaxAttempts: 100, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		DialOptions: []grpc.DialOption{seen.interceptor()},
		OnRetry: func(ri metering.RetryInfo) {
			mu.Lock()
			retried = append(retried, ri.Err.Code)
			mu.Unlock()
		},
	})
	account := uniqueID("deadline-")
	createAccount(t, c, account)
	// Warm up the connection, so that the frozen server has it open.
	if _, err := c.GetBalance(ctxT(t, 10*time.Second), &meteringv1.GetBalanceRequest{AccountId: account}); err != nil {
		t.Fatal(err)
	}

	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		thawed <- srv.Signal(syscall.SIGCONT)
	}()
	req := usageRecord(account, "retry-after-deadline")
	resp, err := c.RecordUsage(ctxT(t, 60*time.Second), req)
	if terr := <-thawed; terr != nil {
		t.Fatal(terr)
	}
	if err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	checkSameRequestID(t, &seen, req, 2)
	mu.Lock()
	if !slices.Contains(retried, codes.DeadlineExceeded) {
		t.Errorf("retried on %v, want DEADLINE_EXCEEDED among them", retried)
	}
	mu.Unlock()
	t.Logf("final attempt replayed=%v", resp.GetReplayed())
	// The abandoned attempts may still run on the server: let them finish.
	time.Sleep(500 * time.Millisecond)
	if tot := totals(t, c, account); tot.GetRequestCount() != 1 {
		t.Fatalf("%d records, want 1", tot.GetRequestCount())
	}
	if b := balanceNanos(t, c, account); b != -usageRecordNanos {
		t.Fatalf("balance %d nanos, want %d", b, -usageRecordNanos)
	}
	// A later retry of the same request is answered as a replay.
	again, err := c.RecordUsage(ctxT(t, 10*time.Second), req)
	if err != nil || !again.GetReplayed() {
		t.Fatalf("replay: %v, %v", again, err)
	}
}
