package metering_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	metering "github.com/metering-dev/metering/clients/go"
	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
	"github.com/metering-dev/metering/clients/go/internal/testserver"
)

const correctUsageMethod = "/metering.v1.MeteringService/CorrectUsage"

func moneyNanos(m *meteringv1.Money) int64 {
	return m.GetUnits()*1_000_000_000 + int64(m.GetNanos())
}

// summaryOf returns the account's usage totals over [now-1h, now+1h) of the
// given sources (all when none).
func summaryOf(t *testing.T, c *metering.Client, account string, sources ...meteringv1.UsageSource) *meteringv1.UsageSummaryRow {
	t.Helper()
	now := time.Now()
	resp, err := c.UsageSummary(ctxT(t, 10*time.Second), &meteringv1.UsageSummaryRequest{
		AccountId:    account,
		StartTime:    timestamppb.New(now.Add(-time.Hour)),
		EndTime:      timestamppb.New(now.Add(time.Hour)),
		UsageSources: sources,
	})
	if err != nil {
		t.Fatalf("UsageSummary(%s): %v", account, err)
	}
	return resp.GetTotals()
}

// TestCorrectUsage: a correction moves the balance by exactly the cost
// difference, a repeat of the same figure replays, and the call then counts
// as CORRECTED.
func TestCorrectUsage(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.Addr, metering.Options{})
	account := uniqueID("fix-")
	createAccount(t, c, account)
	ctx := ctxT(t, 30*time.Second)

	first, err := c.RecordUsage(ctx, usageRecord(account, "fix-1"))
	if err != nil {
		t.Fatal(err)
	}
	before := balanceNanos(t, c, account)

	// 2000 × 0.15 + 1000 × 0.60 per million = 900000 nanos.
	correction := &meteringv1.CorrectUsageRequest{
		AccountId: account, RequestId: "fix-1",
		Usage:  &meteringv1.TokenUsage{InputTokens: 2000, OutputTokens: 1000},
		Reason: "provider invoice",
	}
	fixed, err := c.CorrectUsage(ctx, correction)
	if err != nil {
		t.Fatalf("CorrectUsage: %v", err)
	}
	if fixed.GetCorrectsRecordId() != first.GetRecordId() || fixed.GetReplayed() || fixed.GetTransactionId() == "" {
		t.Fatalf("correction %v (record %s)", fixed, first.GetRecordId())
	}
	if moneyNanos(fixed.GetCost()) != 900000 || moneyNanos(fixed.GetCostDifference()) != 900000-usageRecordNanos {
		t.Fatalf("cost %v, difference %v", fixed.GetCost(), fixed.GetCostDifference())
	}
	if d := fixed.GetUsageDifference(); d.GetInputTokens() != 1000 || d.GetOutputTokens() != 500 {
		t.Fatalf("usage difference %v", d)
	}
	after := balanceNanos(t, c, account)
	if after != before-moneyNanos(fixed.GetCostDifference()) || moneyNanos(fixed.GetBalance()) != after {
		t.Fatalf("balance %d -> %d (response %v), difference %v", before, after, fixed.GetBalance(), fixed.GetCostDifference())
	}

	// The same figure again, without a correction_id (derived by the
	// service): a replay that changes nothing.
	again, err := c.CorrectUsage(ctx, proto.Clone(correction).(*meteringv1.CorrectUsageRequest))
	if err != nil {
		t.Fatal(err)
	}
	if !again.GetReplayed() || again.GetTransactionId() != fixed.GetTransactionId() {
		t.Fatalf("repeat %v, want a replay of %s", again, fixed.GetTransactionId())
	}
	if b := balanceNanos(t, c, account); b != after {
		t.Fatalf("balance %d after a replay, want %d", b, after)
	}

	// An exact cost under an explicit correction_id; reusing the id with
	// another payload is a conflict.
	exact := proto.Clone(correction).(*meteringv1.CorrectUsageRequest)
	exact.Cost = &meteringv1.Money{CurrencyCode: "USD", Nanos: 500000}
	exact.CorrectionId = "invoice-7"
	resp, err := c.CorrectUsage(ctx, exact)
	if err != nil {
		t.Fatal(err)
	}
	if moneyNanos(resp.GetCostDifference()) != -400000 || balanceNanos(t, c, account) != after+400000 {
		t.Fatalf("exact cost correction %v", resp)
	}
	exact.Cost.Nanos = 600000
	_, err = c.CorrectUsage(ctx, exact)
	if metering.CodeOf(err) != codes.AlreadyExists || metering.ReasonOf(err) != metering.ReasonRequestIDConflict {
		t.Fatalf("reused correction_id: %v", err)
	}

	// The call counts as CORRECTED, with its corrected figures.
	tot := summaryOf(t, c, account, meteringv1.UsageSource_USAGE_SOURCE_CORRECTED)
	if tot.GetRequestCount() != 1 || tot.GetInputTokens() != 2000 || moneyNanos(tot.GetCost()) != 500000 {
		t.Fatalf("CORRECTED totals %v", tot)
	}

	t.Run("errors", func(t *testing.T) {
		_, err := c.CorrectUsage(ctx, &meteringv1.CorrectUsageRequest{
			AccountId: account, RequestId: "never-recorded", Usage: &meteringv1.TokenUsage{InputTokens: 1},
		})
		if metering.CodeOf(err) != codes.NotFound || metering.ReasonOf(err) != metering.ReasonRecordNotFound {
			t.Fatalf("unknown call: %v", err)
		}
		_, err = c.CorrectUsage(ctx, &meteringv1.CorrectUsageRequest{AccountId: account, RequestId: "fix-1"})
		if metering.CodeOf(err) != codes.InvalidArgument {
			t.Fatalf("no usage: %v", err)
		}
	})
}

// TestCorrectUsageRetriedAcrossRestart: CorrectUsage without a
// correction_id is retried (the same message every attempt) while the
// service restarts, and applied once.
func TestCorrectUsageRetriedAcrossRestart(t *testing.T) {
	srv := testserver.Start(t)
	var seen attempts
	c := newClient(t, srv.Addr, metering.Options{
		CallTimeout: 30 * time.Second, MaxAttempts: 100, MaxBackoff: 200 * time.Millisecond,
		DialOptions: []grpc.DialOption{seen.interceptor()},
	})
	account := uniqueID("fixretry-")
	createAccount(t, c, account)
	if _, err := c.RecordUsage(ctxT(t, 10*time.Second), usageRecord(account, "fix-r")); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		restarted <- srv.TryRestart()
	}()
	req := &meteringv1.CorrectUsageRequest{
		AccountId: account, RequestId: "fix-r",
		Usage: &meteringv1.TokenUsage{InputTokens: 2000, OutputTokens: 1000},
	}
	resp, err := c.CorrectUsage(ctxT(t, 60*time.Second), req)
	if rerr := <-restarted; rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("CorrectUsage: %v", err)
	}
	sent := seen.of(correctUsageMethod)
	if len(sent) < 2 {
		t.Fatalf("%d attempts, want retries", len(sent))
	}
	for i, m := range sent {
		if !proto.Equal(m, req) {
			t.Fatalf("attempt %d sent %v, want %v", i+1, m, req)
		}
	}
	if moneyNanos(resp.GetCostDifference()) != 900000-usageRecordNanos {
		t.Fatalf("difference %v", resp.GetCostDifference())
	}
	if b := balanceNanos(t, c, account); b != -900000 {
		t.Fatalf("balance %d nanos, want -900000", b)
	}
}

// TestRecordEstimatedFromTexts: a call without usage that carries its texts
// is recorded as ESTIMATED with the counted tokens; without them, MISSING.
func TestRecordEstimatedFromTexts(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.Addr, metering.Options{})
	account := uniqueID("est-")
	createAccount(t, c, account)
	ctx := ctxT(t, 30*time.Second)

	// "tiktoken is great!" is 6 tokens with o200k_base (gpt-4o-mini).
	call := metering.Call{
		AccountID: account, RequestID: "est-1", Model: "gpt-4o-mini", Provider: "openai", Streamed: true,
		PromptText: "tiktoken is great!", CompletionText: "tiktoken is great!",
	}
	resp, err := c.RecordUsage(ctx, call.Record(nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetUsageSource() != meteringv1.UsageSource_USAGE_SOURCE_ESTIMATED ||
		resp.GetUsage().GetInputTokens() != 6 || resp.GetUsage().GetOutputTokens() != 6 {
		t.Fatalf("estimated record %v", resp)
	}
	if moneyNanos(resp.GetCost()) != 6*150+6*600 {
		t.Fatalf("cost %v", resp.GetCost())
	}

	// A stream tail without usage, with the raw request and the streamed text.
	tail := []byte(`data: {"id":"chatcmpl-e","object":"chat.completion.chunk","model":"gpt-4o-mini",` +
		`"choices":[{"index":0,"delta":{"content":"tiktoken is great!"}}]}` + "\n\ndata: [DONE]\n\n")
	body := []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say it"}]}`)
	call = metering.Call{
		AccountID: account, RequestID: "est-2", Model: "gpt-4o-mini", Provider: "openai", Streamed: true,
		RequestJSON: body, RequestFormat: meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS,
		CompletionText: "tiktoken is great!",
	}
	fromTail, err := c.RecordUsage(ctx, call.RecordFromResponse(tail, metering.FormatForPath("/v1/chat/completions")))
	if err != nil {
		t.Fatal(err)
	}
	est, err := c.EstimateTokens(ctx, &meteringv1.EstimateTokensRequest{
		Model: "gpt-4o-mini", RequestJson: body, RequestFormat: meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS,
	})
	if err != nil {
		t.Fatal(err)
	}
	if fromTail.GetUsageSource() != meteringv1.UsageSource_USAGE_SOURCE_ESTIMATED ||
		fromTail.GetUsage().GetOutputTokens() != 6 || fromTail.GetUsage().GetInputTokens() != est.GetInputTokens() {
		t.Fatalf("estimated from the tail: %v (request estimate %d input tokens)", fromTail, est.GetInputTokens())
	}

	// Nothing to go on: MISSING, with the fallback that priced it.
	missing, err := c.RecordUsage(ctx, metering.Call{AccountID: account, RequestID: "est-3", Model: "gpt-4o-mini"}.Record(nil))
	if err != nil {
		t.Fatal(err)
	}
	if missing.GetUsageSource() != meteringv1.UsageSource_USAGE_SOURCE_MISSING {
		t.Fatalf("record without anything: %v", missing)
	}
	t.Logf("missing_usage_fallback %v", missing.GetMissingUsageFallback())

	tot := summaryOf(t, c, account)
	if tot.GetRequestCount() != 3 || tot.GetEstimatedRequestCount() != 2 || tot.GetMissingRequestCount() != 1 ||
		moneyNanos(tot.GetEstimatedCost()) != moneyNanos(resp.GetCost())+moneyNanos(fromTail.GetCost()) {
		t.Fatalf("totals %v", tot)
	}
}

// TestReporterCarriesEstimateInputs: a record without usage goes through
// the Reporter with its texts and comes back ESTIMATED.
func TestReporterCarriesEstimateInputs(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.Addr, metering.Options{})
	account := uniqueID("repest-")
	createAccount(t, c, account)
	got := make(chan *meteringv1.RecordUsageResponse, 1)
	r := fastReporter(t, c, t.TempDir(), func(o *metering.ReporterOptions) {
		o.OnRecorded = func(_ *meteringv1.RecordUsageRequest, resp *meteringv1.RecordUsageResponse) { got <- resp }
	})
	call := metering.Call{
		AccountID: account, RequestID: "rep-est", Model: "gpt-4o-mini", Streamed: true,
		PromptText: "tiktoken is great!", CompletionText: "tiktoken is great!",
	}
	if err := r.Report(call.RecordFromResponse(
		[]byte(`data: {"id":"c","object":"chat.completion.chunk","choices":[]}`+"\n\ndata: [DONE]\n\n"),
		meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS)); err != nil {
		t.Fatal(err)
	}
	flushUntilDrained(t, r, 30*time.Second)
	select {
	case resp := <-got:
		if resp.GetUsageSource() != meteringv1.UsageSource_USAGE_SOURCE_ESTIMATED || resp.GetUsage().GetOutputTokens() != 6 {
			t.Fatalf("reported record %v", resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("not recorded; stats %+v", r.Stats())
	}
}

func TestCallEstimateInputs(t *testing.T) {
	body := []byte(`{"model":"m"}`)
	long := strings.Repeat("é", metering.MaxEstimateText+10)
	call := metering.Call{
		AccountID: "a", RequestID: "r", Model: "m",
		RequestJSON: body, RequestFormat: meteringv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES,
		PromptText: "p", CompletionText: long,
	}
	req := call.RecordFromResponse(nil, meteringv1.ApiFormat_API_FORMAT_UNSPECIFIED)
	body[0] = 'X'
	if !bytes.Equal(req.GetRequestJson(), []byte(`{"model":"m"}`)) ||
		req.GetRequestFormat() != meteringv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES || req.GetPromptText() != "p" {
		t.Fatalf("estimate inputs not set: %v", req)
	}
	if n := len([]rune(req.GetCompletionText())); n != metering.MaxEstimateText {
		t.Fatalf("completion_text of %d runes, want %d", n, metering.MaxEstimateText)
	}
	// Known usage: the texts are not sent.
	rec := call.Record(&meteringv1.TokenUsage{InputTokens: 1})
	if rec.GetRequestJson() != nil || rec.GetPromptText() != "" || rec.GetCompletionText() != "" {
		t.Fatalf("Record with usage sent the estimate inputs: %v", rec)
	}
	if call.Record(nil).GetPromptText() != "p" {
		t.Fatal("Record(nil) dropped the estimate inputs")
	}
	// An oversized request body is dropped (the service would refuse the record).
	call.RequestJSON = make([]byte, metering.MaxResponseJSON+1)
	if req := call.Record(nil); req.GetRequestJson() != nil || req.GetRequestFormat() != meteringv1.ApiFormat_API_FORMAT_UNSPECIFIED {
		t.Fatal("oversized request_json kept")
	}
}
