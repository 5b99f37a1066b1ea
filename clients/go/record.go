package metering

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
)

// MaxResponseJSON is the largest response_json the service accepts (4 MiB).
const MaxResponseJSON = 4 << 20

// MaxEstimateText is the longest prompt_text or completion_text the service
// accepts, in characters (runes).
const MaxEstimateText = 1_000_000

// DefaultTailBytes is the stream tail NewResponseTail keeps by default: far
// more than the last few events that carry a stream's usage.
const DefaultTailBytes = 64 << 10

// Call describes one LLM call a relay made, for building its RecordUsage.
type Call struct {
	// AccountID is the account to debit.
	AccountID string
	// RequestID is the idempotency key, unique per account; NewRequestID
	// makes one. Every retry and replay of the record must carry the same.
	RequestID string
	// Model the relay called, e.g. "gpt-4o-mini".
	Model string
	// Provider, e.g. "openai"; optional when the model identifies it.
	Provider string
	// APIKeyID is the relay's key or user that made the call.
	APIKeyID string
	// Service is the relay's product or app name.
	Service string
	// EventTime is when the call happened; zero means now. The builders set
	// it in the request, so that a record sent late (after a retry or from
	// the spool) is still priced at the time of the call.
	EventTime time.Time
	// Streamed says the response was streamed.
	Streamed bool
	// Batch says the call went through the provider's batch API.
	Batch bool
	// Labels are free-form labels (copied).
	Labels map[string]string

	// For an estimate when the provider sent no usage (a stream without a
	// usage chunk, or cut short): with these the service estimates the
	// usage (usage_source ESTIMATED) instead of recording the call as
	// MISSING. They are sent only by RecordFromResponse and by Record with
	// nil usage; the service ignores them when the usage is known.
	//
	// RequestJSON is the raw request body the relay forwarded (copied;
	// dropped when larger than MaxResponseJSON), RequestFormat its format
	// (API_FORMAT_UNSPECIFIED: detect).
	RequestJSON   []byte
	RequestFormat meteringv1.ApiFormat
	// PromptText is the prompt, instead of RequestJSON.
	PromptText string
	// CompletionText is the text the relay forwarded, e.g. the
	// concatenated deltas of the stream.
	// Both texts are cut to MaxEstimateText characters.
	CompletionText string
}

// withEstimateInputs sets the estimate inputs of c on req.
func (c Call) withEstimateInputs(req *meteringv1.RecordUsageRequest) *meteringv1.RecordUsageRequest {
	if len(c.RequestJSON) > 0 && len(c.RequestJSON) <= MaxResponseJSON {
		req.RequestJson = bytes.Clone(c.RequestJSON)
		req.RequestFormat = c.RequestFormat
	}
	req.PromptText = cutRunes(c.PromptText, MaxEstimateText)
	req.CompletionText = cutRunes(c.CompletionText, MaxEstimateText)
	return req
}

// cutRunes returns the first n runes of s.
func cutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

func (c Call) base() *meteringv1.RecordUsageRequest {
	t := c.EventTime
	if t.IsZero() {
		t = time.Now()
	}
	return &meteringv1.RecordUsageRequest{
		AccountId: c.AccountID,
		RequestId: c.RequestID,
		Model:     c.Model,
		Provider:  c.Provider,
		ApiKeyId:  c.APIKeyID,
		Service:   c.Service,
		EventTime: timestamppb.New(t),
		Streamed:  c.Streamed,
		Batch:     c.Batch,
		Labels:    maps.Clone(c.Labels),
	}
}

// RecordFromResponse builds the RecordUsage of a call from the provider's
// raw response: the whole JSON body of a non-streamed response, or the tail
// of a stream (ResponseTail.Bytes), at most MaxResponseJSON bytes. The
// service extracts the normalized token usage itself (Anthropic's cache
// tokens, Gemini's thoughts and so on are its business, not the relay's).
// format may be API_FORMAT_UNSPECIFIED to let the service detect it;
// FormatForPath names it from the upstream path. A response without usage
// (an OpenAI stream without stream_options.include_usage) is estimated from
// the Call's RequestJSON or PromptText and CompletionText when set
// (usage_source ESTIMATED), and recorded as one request with usage_source
// MISSING otherwise.
func (c Call) RecordFromResponse(body []byte, format meteringv1.ApiFormat) *meteringv1.RecordUsageRequest {
	req := c.withEstimateInputs(c.base())
	req.ResponseJson = bytes.Clone(body)
	req.ResponseFormat = format
	return req
}

// Record builds the RecordUsage of a call whose usage the relay already has
// in normalized form. With nil usage the call is estimated from the Call's
// RequestJSON or PromptText and CompletionText when set, and recorded with
// usage_source MISSING otherwise.
func (c Call) Record(usage *meteringv1.TokenUsage) *meteringv1.RecordUsageRequest {
	req := c.base()
	if usage == nil {
		c.withEstimateInputs(req)
	}
	req.Usage = usage
	return req
}

// NewRequestID returns a random idempotency key ("req_" and 32 hex digits).
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return "req_" + hex.EncodeToString(b[:])
}

// FormatForPath names the response format of a provider endpoint from its
// URL path: /chat/completions, /responses, /messages, :generateContent and
// :streamGenerateContent, /ai/run/ (Workers AI), /chat-messages and
// /completion-messages (Dify). Anything else is API_FORMAT_UNSPECIFIED,
// which the service detects from the content.
func FormatForPath(path string) meteringv1.ApiFormat {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimSuffix(path, "/")
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS
	case strings.HasSuffix(path, "/responses"):
		return meteringv1.ApiFormat_API_FORMAT_OPENAI_RESPONSES
	case strings.HasSuffix(path, "/messages") && !strings.HasSuffix(path, "/chat-messages"):
		return meteringv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES
	case strings.HasSuffix(path, ":generateContent"), strings.HasSuffix(path, ":streamGenerateContent"):
		return meteringv1.ApiFormat_API_FORMAT_GEMINI_GENERATE_CONTENT
	case strings.Contains(path, "/ai/run/"):
		return meteringv1.ApiFormat_API_FORMAT_WORKERS_AI
	case strings.HasSuffix(path, "/chat-messages"), strings.HasSuffix(path, "/completion-messages"):
		return meteringv1.ApiFormat_API_FORMAT_DIFY
	}
	return meteringv1.ApiFormat_API_FORMAT_UNSPECIFIED
}

// ResponseTail is an io.Writer that keeps the last bytes written to it: tee
// a provider's stream into it while relaying, then pass Bytes to
// Call.RecordFromResponse. Memory stays bounded by twice the limit however
// long the stream. Not safe for concurrent writes.
type ResponseTail struct {
	limit     int
	buf       []byte
	total     int64
	truncated bool
}

// NewResponseTail keeps the last limit bytes (DefaultTailBytes if limit <=
// 0; at most MaxResponseJSON).
func NewResponseTail(limit int) *ResponseTail {
	if limit <= 0 {
		limit = DefaultTailBytes
	}
	limit = min(limit, MaxResponseJSON)
	return &ResponseTail{limit: limit}
}

// Write appends p, dropping the oldest bytes beyond the limit. It never fails.
func (t *ResponseTail) Write(p []byte) (int, error) {
	t.total += int64(len(p))
	if len(p) >= t.limit {
		t.buf = append(t.buf[:0], p[len(p)-t.limit:]...)
		t.truncated = t.truncated || t.total > int64(t.limit)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.limit {
		n := copy(t.buf, t.buf[len(t.buf)-t.limit:])
		t.buf = t.buf[:n]
		t.truncated = true
	}
	return len(p), nil
}

// Len returns the number of bytes written in all.
func (t *ResponseTail) Len() int64 { return t.total }

// Truncated reports whether bytes were dropped from the front.
func (t *ResponseTail) Truncated() bool { return t.truncated || len(t.buf) > t.limit }

// Bytes returns the kept tail. When the front was dropped, the tail starts
// at the first whole event or line: after the first blank line (the end of
// a server-sent event) if there is one, else after the first newline.
func (t *ResponseTail) Bytes() []byte {
	b := t.buf
	if len(b) > t.limit {
		b = b[len(b)-t.limit:]
	}
	if t.Truncated() {
		if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
			b = b[i+2:]
		} else if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			b = b[i+4:]
		} else if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return bytes.Clone(b)
}
