package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	metering "github.com/metering-dev/metering/clients/go"
	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
)

// maxRequestBytes bounds a client's request body.
const maxRequestBytes = 4 << 20

// Relay is a minimal OpenAI-compatible relay: it forwards
// POST /v1/chat/completions to an upstream, streaming the response back
// as it arrives, and meters every call: EstimateTokens before, RecordUsage
// (through a Reporter) at stream end. The record carries the response's
// tail (the service extracts the usage from it) and, for a stream that
// ends without usage (no stream_options.include_usage), the request body
// and the streamed text, from which the service estimates the usage
// (usage_source ESTIMATED) instead of recording it as MISSING.
type Relay struct {
	// Upstream is the provider's base URL, e.g. "https://api.openai.com".
	Upstream string
	// UpstreamKey is sent upstream as the bearer token.
	UpstreamKey string
	// Keys maps a client's bearer token to its metering account.
	Keys map[string]string
	// Metering answers estimates; Reporter records usage.
	Metering *metering.Client
	Reporter *metering.Reporter
	// Service names this relay in usage records.
	Service string
	// EstimateTimeout bounds the EstimateTokens call; default 2s (the
	// service's first estimate of a model loads its tokenizer).
	EstimateTimeout time.Duration
	// HTTP is the client for upstream calls; default http.DefaultClient.
	HTTP *http.Client
	Log  *slog.Logger
}

func (rl *Relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		httpError(w, http.StatusNotFound, "not_found", "only POST /v1/chat/completions is relayed")
		return
	}
	key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	account, ok := rl.Keys[key]
	if !ok || key == "" {
		httpError(w, http.StatusUnauthorized, "invalid_api_key", "unknown API key")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil || len(body) > maxRequestBytes {
		httpError(w, http.StatusBadRequest, "invalid_request", "request body unreadable or larger than 4 MiB")
		return
	}
	var head struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if err := json.Unmarshal(body, &head); err != nil || head.Model == "" {
		httpError(w, http.StatusBadRequest, "invalid_request", "body must be JSON with a model")
		return
	}
	start := time.Now()
	call := metering.Call{
		AccountID: account,
		RequestID: metering.NewRequestID(),
		Model:     head.Model,
		Provider:  "openai",
		APIKeyID:  keyID(key),
		Service:   rl.Service,
		EventTime: start,
		Streamed:  head.Stream,
	}

	// Before: count the prompt the way the provider will. Metering is
	// advisory on this path: if it is slow or down, the call goes ahead.
	timeout := rl.EstimateTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ectx, cancel := context.WithTimeout(r.Context(), timeout)
	est, err := rl.Metering.EstimateTokens(ectx, &meteringv1.EstimateTokensRequest{
		AccountId:     account,
		Model:         head.Model,
		RequestJson:   body,
		RequestFormat: meteringv1.ApiFormat_API_FORMAT_OPENAI_CHAT_COMPLETIONS,
	})
	cancel()
	if err != nil {
		rl.Log.Warn("estimate failed", "err", err)
	} else {
		w.Header().Set("X-Metering-Estimated-Input-Tokens", strconv.FormatInt(est.GetInputTokens(), 10))
		w.Header().Set("X-Metering-Request-Id", call.RequestID)
	}

	up, err := http.NewRequestWithContext(r.Context(), http.MethodPost,
		strings.TrimSuffix(rl.Upstream, "/")+r.URL.Path, bytes.NewReader(body))
	if err != nil {
		httpError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	up.Header.Set("Content-Type", "application/json")
	up.Header.Set("Authorization", "Bearer "+rl.UpstreamKey)
	hc := rl.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(up)
	if err != nil {
		httpError(w, http.StatusBadGateway, "upstream_unreachable", err.Error())
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Cache-Control"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)

	// Relay the body as it arrives, keeping its tail for metering: the
	// whole body of a JSON response, the last events of a stream.
	tailBytes := metering.MaxResponseJSON
	if head.Stream {
		tailBytes = metering.DefaultTailBytes
	}
	tail := metering.NewResponseTail(tailBytes)
	var sink io.Writer = io.MultiWriter(w, tail)
	var text *streamText // the streamed deltas, for an estimate without usage
	if head.Stream {
		text = &streamText{}
		sink = io.MultiWriter(w, tail, text)
	}
	copyErr := copyFlushing(sink, resp.Body, w)
	if resp.StatusCode/100 != 2 {
		return // the provider refused the call: nothing to bill
	}
	if copyErr != nil {
		rl.Log.Warn("stream cut short", "request_id", call.RequestID, "err", copyErr)
	}

	// After: record what the provider says it used. The service extracts
	// the usage from the tail; Report returns at once (batched, spooled to
	// disk if the service is down). The request body and the streamed text
	// are ignored when the tail carries usage, and estimated from otherwise.
	format := metering.FormatForPath(r.URL.Path)
	call.RequestJSON, call.RequestFormat = body, format
	if text != nil {
		call.CompletionText = text.String()
	}
	rec := call.RecordFromResponse(tail.Bytes(), format)
	if err := rl.Reporter.Report(rec); err != nil {
		rl.Log.Error("usage not recorded", "request_id", call.RequestID, "err", err)
	}
}

// copyFlushing copies src to dst, flushing the HTTP response after every
// read so that each SSE event reaches the client when it arrives.
func copyFlushing(dst io.Writer, src io.Reader, w http.ResponseWriter) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// maxStreamText bounds the completion text a streamText keeps, in bytes:
// room for metering.MaxEstimateText characters of any width.
const maxStreamText = 4 * metering.MaxEstimateText

// streamText is an io.Writer that collects the text of a relayed
// chat.completion.chunk stream: the choices' delta contents, in order.
// Not safe for concurrent writes.
type streamText struct {
	line []byte // the unfinished last line
	text strings.Builder
}

// Write consumes whole lines ("data: {...}") as they complete. It never fails.
func (s *streamText) Write(p []byte) (int, error) {
	s.line = append(s.line, p...)
	start := 0
	for {
		i := bytes.IndexByte(s.line[start:], '\n')
		if i < 0 {
			break
		}
		s.add(s.line[start : start+i])
		start += i + 1
	}
	switch {
	case len(s.line)-start > maxRequestBytes: // no event is this long: not SSE
		s.line = s.line[:0]
	case start > 0: // keep the unfinished line only
		s.line = s.line[:copy(s.line, s.line[start:])]
	}
	return len(p), nil
}

func (s *streamText) add(line []byte) {
	data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r"), []byte("data:"))
	data = bytes.TrimSpace(data)
	if !ok || len(data) == 0 || data[0] != '{' || s.text.Len() >= maxStreamText {
		return
	}
	var chunk struct {
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if json.Unmarshal(data, &chunk) != nil {
		return
	}
	for _, c := range chunk.Choices {
		s.text.WriteString(c.Delta.Content)
	}
}

// String returns the text collected so far.
func (s *streamText) String() string { return s.text.String() }

// keyID is what the relay records as api_key_id: a digest of the key,
// never the secret itself.
func keyID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "key_" + hex.EncodeToString(sum[:6])
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]string{"message": msg, "type": "relay_error", "code": code},
	})
}
