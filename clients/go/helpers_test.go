package metering_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	metering "github.com/metering-dev/metering/clients/go"
	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
)

// uniqueID returns prefix + 10 random hex characters.
func uniqueID(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func newClient(t testing.TB, addr string, opts metering.Options) *metering.Client {
	t.Helper()
	c, err := metering.New(addr, opts)
	if err != nil {
		t.Fatalf("metering.New(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createAccount creates a postpaid (may go negative) account.
func createAccount(t testing.TB, c *metering.Client, id string) {
	t.Helper()
	_, err := c.CreateAccount(ctxT(t, 10*time.Second), &meteringv1.CreateAccountRequest{
		AccountId: id, AllowNegativeBalance: true,
	})
	if err != nil {
		t.Fatalf("CreateAccount(%s): %v", id, err)
	}
}

// totals returns the account's usage totals over [now-1h, now+1h).
func totals(t testing.TB, c *metering.Client, account string) *meteringv1.UsageSummaryRow {
	t.Helper()
	now := time.Now()
	resp, err := c.UsageSummary(ctxT(t, 10*time.Second), &meteringv1.UsageSummaryRequest{
		AccountId:   account,
		StartTime:   timestamppb.New(now.Add(-time.Hour)),
		EndTime:     timestamppb.New(now.Add(time.Hour)),
		Granularity: meteringv1.Granularity_GRANULARITY_NONE,
	})
	if err != nil {
		t.Fatalf("UsageSummary(%s): %v", account, err)
	}
	return resp.GetTotals()
}

// balanceNanos returns the account's money balance in nanos.
func balanceNanos(t testing.TB, c *metering.Client, account string) int64 {
	t.Helper()
	resp, err := c.GetBalance(ctxT(t, 10*time.Second), &meteringv1.GetBalanceRequest{AccountId: account})
	if err != nil {
		t.Fatalf("GetBalance(%s): %v", account, err)
	}
	b := resp.GetBalance()
	return b.GetUnits()*1_000_000_000 + int64(b.GetNanos())
}

// usageRecord is a gpt-4o-mini record of 1000 input and 500 output tokens:
// 1000 × 0.15 + 500 × 0.60 per million = 450000 nanos.
func usageRecord(account, requestID string) *meteringv1.RecordUsageRequest {
	return &meteringv1.RecordUsageRequest{
		AccountId: account,
		RequestId: requestID,
		Model:     "gpt-4o-mini",
		Provider:  "openai",
		Usage:     &meteringv1.TokenUsage{InputTokens: 1000, OutputTokens: 500},
	}
}

const usageRecordNanos = 450000

// attempts records, per gRPC method, the request of every attempt the
// client makes (a real interceptor on the real connection, not a mock).
type attempts struct {
	mu   sync.Mutex
	reqs map[string][]proto.Message
}

func (a *attempts) interceptor() grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
		cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		a.mu.Lock()
		if a.reqs == nil {
			a.reqs = map[string][]proto.Message{}
		}
		a.reqs[method] = append(a.reqs[method], proto.Clone(req.(proto.Message)))
		a.mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

func (a *attempts) of(method string) []proto.Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]proto.Message(nil), a.reqs[method]...)
}
