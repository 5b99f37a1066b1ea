package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	metering "github.com/metering-dev/metering/clients/go"
	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
	"github.com/metering-dev/metering/clients/go/internal/testserver"
)

// TestRelayEndToEnd runs the relay between a client and the fake upstream,
// metered by the real service: streams with and without a usage chunk and
// a plain JSON response, then checks what the service recorded.
func TestRelayEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	client, err := metering.New(srv.Addr, metering.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := t.Context()
	account := "relay-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	if _, err := client.CreateAccount(ctx, &meteringv1.CreateAccountRequest{AccountId: account}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.GrantCredits(ctx, &meteringv1.GrantCreditsRequest{
		AccountId: account, RequestId: "topup-1",
		Amount: &meteringv1.Money{CurrencyCode: "USD", Units: 1},
	}); err != nil {
		t.Fatal(err)
	}

	fake := NewFakeUpstream()
	upstream := httptest.NewServer(fake)
	defer upstream.Close()
	reporter, err := metering.NewReporter(client, metering.ReporterOptions{SpoolDir: t.TempDir(), FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	relay := httptest.NewServer(&Relay{
		Upstream: upstream.URL, UpstreamKey: "sk-upstream", Keys: map[string]string{"sk-test": account},
		Metering: client, Reporter: reporter, Service: "example-relay", Log: log,
		EstimateTimeout: 20 * time.Second, // a cold tokenizer on a busy test machine
	})
	defer relay.Close()

	post := func(body string, key string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, relay.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	const messages = `"messages":[{"role":"user","content":"Say hello"}]`

	t.Run("stream with usage chunk", func(t *testing.T) {
		// The upstream holds the stream after its first word until the
		// client has it: a buffering relay would hang here.
		fake.AfterFirstChunk = make(chan struct{})
		defer func() { fake.AfterFirstChunk = nil }()
		resp := post(`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},`+messages+`}`, "sk-test")
		defer resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("X-Metering-Estimated-Input-Tokens") == "" {
			t.Error("no X-Metering-Estimated-Input-Tokens header: EstimateTokens was not called")
		}
		events := make(chan string)
		go func() {
			defer close(events)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					events <- data
				}
			}
		}()
		text, usage := "", false
		for i := 0; ; i++ {
			var data string
			var ok bool
			select {
			case data, ok = <-events:
			case <-time.After(10 * time.Second):
				t.Fatal("no event within 10s: the relay is not streaming")
			}
			if !ok {
				t.Fatal("stream ended without [DONE]")
			}
			if i == 1 {
				close(fake.AfterFirstChunk) // the first word arrived before the rest was sent
			}
			if data == "[DONE]" {
				break
			}
			var chunk struct {
				Choices []struct{ Delta struct{ Content string } }
				Usage   *struct {
					PromptTokens int `json:"prompt_tokens"`
				}
			}
			if err := json.Unmarshal([]byte(data), &chunk); err != nil {
				t.Fatalf("event %q: %v", data, err)
			}
			for _, c := range chunk.Choices {
				text += c.Delta.Content
			}
			usage = usage || chunk.Usage != nil
		}
		if text != "Hello from the fake upstream" || !usage {
			t.Fatalf("text %q, usage chunk %v", text, usage)
		}
	})

	// The stream without usage is estimated from the request body the relay
	// forwarded and the text it streamed: what EstimateTokens counts for them.
	var estimated *meteringv1.EstimateTokensResponse
	t.Run("stream without usage chunk", func(t *testing.T) {
		request := `{"model":"gpt-4o-mini","stream":true,` + messages + `}`
		resp := post(request, "sk-test")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasSuffix(string(body), "data: [DONE]\n\n") || strings.Contains(string(body), `"usage"`) {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
		text := ""
		for _, line := range strings.Split(string(body), "\n") {
			data, ok := strings.CutPrefix(line, "data: {")
			if !ok {
				continue
			}
			var chunk struct {
				Choices []struct{ Delta struct{ Content string } }
			}
			if err := json.Unmarshal([]byte("{"+data), &chunk); err != nil {
				t.Fatalf("event %q: %v", line, err)
			}
			for _, c := range chunk.Choices {
				text += c.Delta.Content
			}
		}
		if text != "Hello from the fake upstream" {
			t.Fatalf("streamed text %q", text)
		}
		var err error
		estimated, err = client.EstimateTokens(ctx, &meteringv1.EstimateTokensRequest{
			Model: "gpt-4o-mini", RequestJson: []byte(request),
			RequestFormat:  meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS,
			CompletionText: text,
		})
		if err != nil {
			t.Fatal(err)
		}
		if estimated.GetInputTokens() <= 0 || estimated.GetOutputTokens() <= 0 || estimated.GetEstimatedCost() == nil {
			t.Fatalf("estimate %v", estimated)
		}
	})
	if estimated == nil {
		t.FailNow()
	}

	t.Run("json response", func(t *testing.T) {
		resp := post(`{"model":"gpt-4o-mini",`+messages+`}`, "sk-test")
		var out struct {
			Choices []struct{ Message struct{ Content string } }
		}
		err := json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || out.Choices[0].Message.Content != "Hello from the fake upstream" {
			t.Fatalf("status %d, %+v, %v", resp.StatusCode, out, err)
		}
	})

	t.Run("unknown key", func(t *testing.T) {
		resp := post(`{"model":"gpt-4o-mini",`+messages+`}`, "sk-nope")
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})

	if err := reporter.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reporter.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := reporter.Stats(); st.Recorded != 3 || st.Rejected != 0 {
		t.Fatalf("reporter stats %+v, want 3 recorded", st)
	}

	now := time.Now()
	sum, err := client.UsageSummary(ctx, &meteringv1.UsageSummaryRequest{
		AccountId: account, StartTime: timestamppb.New(now.Add(-time.Hour)), EndTime: timestamppb.New(now.Add(time.Hour)),
		GroupBy: []meteringv1.GroupBy{meteringv1.GroupBy_GROUP_BY_USAGE_SOURCE, meteringv1.GroupBy_GROUP_BY_SERVICE},
	})
	if err != nil {
		t.Fatal(err)
	}
	bySource := map[meteringv1.UsageSource]*meteringv1.UsageSummaryRow{}
	for _, row := range sum.GetRows() {
		if row.GetService() != "example-relay" {
			t.Errorf("row with service %q", row.GetService())
		}
		bySource[row.GetUsageSource()] = row
	}
	// Two calls with usage (the stream's usage chunk, the JSON body):
	// 2 × 435000 nanos; the stream without usage is estimated from the
	// request body and the streamed text, not recorded as missing.
	rep, est := bySource[meteringv1.UsageSource_USAGE_SOURCE_REPORTED], bySource[meteringv1.UsageSource_USAGE_SOURCE_ESTIMATED]
	if rep.GetRequestCount() != 2 || rep.GetInputTokens() != 2000 || rep.GetCacheReadTokens() != 400 ||
		rep.GetOutputTokens() != 1000 || rep.GetCost().GetNanos() != 870000 {
		t.Errorf("reported usage row %v", rep)
	}
	estCost := estimated.GetEstimatedCost()
	if est.GetRequestCount() != 1 || est.GetInputTokens() != estimated.GetInputTokens() ||
		est.GetOutputTokens() != estimated.GetOutputTokens() ||
		est.GetCost().GetUnits() != estCost.GetUnits() || est.GetCost().GetNanos() != estCost.GetNanos() {
		t.Errorf("estimated usage row %v, want the estimate %v", est, estimated)
	}
	if miss, ok := bySource[meteringv1.UsageSource_USAGE_SOURCE_MISSING]; ok {
		t.Errorf("missing usage row %v: the stream without usage should be estimated", miss)
	}
	bal, err := client.GetBalance(ctx, &meteringv1.GetBalanceRequest{AccountId: account})
	if err != nil {
		t.Fatal(err)
	}
	want := int64(1_000_000_000) - 870000 - (estCost.GetUnits()*1_000_000_000 + int64(estCost.GetNanos()))
	if b := bal.GetBalance(); b.GetUnits()*1_000_000_000+int64(b.GetNanos()) != want {
		t.Errorf("balance %v, want 1 USD - 870000 - %v nanos", b, estCost)
	}
}

// TestStreamText feeds a chat.completion.chunk stream to streamText in
// pieces that cut its lines anywhere.
func TestStreamText(t *testing.T) {
	stream := "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":\"Héllo\"}}]}\r\n\r\n" +
		": a comment\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":null}}]}\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":\", world\"}}]}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n" +
		"data: [DONE]\n\n"
	for _, size := range []int{1, 2, 7, 64, len(stream)} {
		var s streamText
		for i := 0; i < len(stream); i += size {
			if _, err := s.Write([]byte(stream[i:min(i+size, len(stream))])); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.String(); got != "Héllo, world" {
			t.Errorf("pieces of %d bytes: %q", size, got)
		}
	}
}
