package metering_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	metering "github.com/metering-dev/metering/clients/go"
	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
)

func TestCallRecordFromResponse(t *testing.T) {
	at := time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)
	labels := map[string]string{"team": "a"}
	call := metering.Call{
		AccountID: "acme", RequestID: "chatcmpl-1", Model: "gpt-4o-mini", Provider: "openai",
		APIKeyID: "key-1", Service: "relay", EventTime: at, Streamed: true, Labels: labels,
	}
	body := []byte(`data: {"usage":{"prompt_tokens":1}}` + "\n\n")
	req := call.RecordFromResponse(body, meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS)
	body[0] = 'X'
	labels["team"] = "b"
	want := &meteringv1.RecordUsageRequest{
		AccountId: "acme", RequestId: "chatcmpl-1", Model: "gpt-4o-mini", Provider: "openai",
		ApiKeyId: "key-1", Service: "relay", Streamed: true, Labels: map[string]string{"team": "a"},
		ResponseJson:   []byte(`data: {"usage":{"prompt_tokens":1}}` + "\n\n"),
		ResponseFormat: meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS,
	}
	if !req.GetEventTime().AsTime().Equal(at) {
		t.Errorf("event_time %v", req.GetEventTime().AsTime())
	}
	req.EventTime = nil
	if !proto.Equal(req, want) {
		t.Errorf("got %v\nwant %v", req, want)
	}

	before := time.Now()
	rec := metering.Call{AccountID: "a", RequestID: "r", Model: "m"}.Record(&meteringv1.TokenUsage{InputTokens: 3})
	if et := rec.GetEventTime().AsTime(); et.Before(before.Add(-time.Second)) || et.After(time.Now().Add(time.Second)) {
		t.Errorf("default event_time %v is not now", et)
	}
	if rec.GetUsage().GetInputTokens() != 3 || rec.ResponseJson != nil {
		t.Errorf("Record: %v", rec)
	}
}

func TestNewRequestID(t *testing.T) {
	a, b := metering.NewRequestID(), metering.NewRequestID()
	if a == b || len(a) != 36 || !strings.HasPrefix(a, "req_") {
		t.Fatalf("%q %q", a, b)
	}
}

func TestFormatForPath(t *testing.T) {
	for path, want := range map[string]meteringv1.ApiFormat{
		"/v1/chat/completions":     meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS,
		"/v1/chat/completions?x=1": meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS,
		"/v1/responses":            meteringv1.ApiFormat_API_FORMAT_OPENAI_RESPONSES,
		"/v1/messages":             meteringv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES,
		"/v1beta/models/gemini-2.5-pro:generateContent":       meteringv1.ApiFormat_API_FORMAT_GEMINI_GENERATE_CONTENT,
		"/v1beta/models/gemini-2.5-pro:streamGenerateContent": meteringv1.ApiFormat_API_FORMAT_GEMINI_GENERATE_CONTENT,
		"/client/v4/accounts/x/ai/run/@cf/meta/llama":         meteringv1.ApiFormat_API_FORMAT_WORKERS_AI,
		"/v1/chat-messages":       meteringv1.ApiFormat_API_FORMAT_DIFY,
		"/v1/completion-messages": meteringv1.ApiFormat_API_FORMAT_DIFY,
		"/v1/embeddings":          meteringv1.ApiFormat_API_FORMAT_UNSPECIFIED,
	} {
		if got := metering.FormatForPath(path); got != want {
			t.Errorf("FormatForPath(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestResponseTail(t *testing.T) {
	t.Run("short stream kept whole", func(t *testing.T) {
		tail := metering.NewResponseTail(100)
		tail.Write([]byte("data: a\n\n"))
		tail.Write([]byte("data: b\n\n"))
		if got := string(tail.Bytes()); got != "data: a\n\ndata: b\n\n" || tail.Truncated() || tail.Len() != 18 {
			t.Fatalf("%q truncated=%v len=%d", got, tail.Truncated(), tail.Len())
		}
	})
	t.Run("long stream keeps whole last events", func(t *testing.T) {
		tail := metering.NewResponseTail(64)
		var all bytes.Buffer
		for i := range 1000 {
			ev := []byte("data: {\"i\":" + strings.Repeat("1", i%7) + "}\n\n")
			all.Write(ev)
			tail.Write(ev)
		}
		tail.Write([]byte("data: [DONE]\n\n"))
		all.WriteString("data: [DONE]\n\n")
		got := tail.Bytes()
		if !tail.Truncated() || len(got) > 64 || !bytes.HasSuffix(all.Bytes(), got) || !bytes.HasPrefix(got, []byte("data: ")) {
			t.Fatalf("tail %q", got)
		}
		if !bytes.HasSuffix(got, []byte("data: [DONE]\n\n")) {
			t.Fatalf("tail %q lost the end", got)
		}
	})
	t.Run("one big write", func(t *testing.T) {
		tail := metering.NewResponseTail(10)
		tail.Write([]byte("line one\nline two\nend\n"))
		if got := string(tail.Bytes()); got != "end\n" {
			t.Fatalf("%q", got)
		}
	})
}

func TestCodeNames(t *testing.T) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		name := metering.CodeName(c)
		back, ok := metering.ParseCode(name)
		if !ok || back != c {
			t.Errorf("ParseCode(CodeName(%v) = %q) = %v, %v", c, name, back, ok)
		}
	}
	if metering.CodeName(codes.InvalidArgument) != "INVALID_ARGUMENT" || metering.CodeName(codes.Canceled) != "CANCELLED" {
		t.Error("canonical names")
	}
	if c, ok := metering.ParseCode("9"); !ok || c != codes.FailedPrecondition {
		t.Error("numeric code")
	}
	if _, ok := metering.ParseCode("NOPE"); ok {
		t.Error("unknown name parsed")
	}
	if metering.FromError(nil) != nil || metering.CodeOf(nil) != codes.OK || metering.ReasonOf(nil) != "" {
		t.Error("nil error")
	}
}
