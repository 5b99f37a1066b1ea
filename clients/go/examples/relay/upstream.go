package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// FakeUpstream is a stand-in for an OpenAI-compatible provider: it answers
// POST /v1/chat/completions with canned text, streamed as
// chat.completion.chunk server-sent events when the request says
// "stream": true. Like OpenAI, a stream ends with a usage chunk only when
// the request asks for it with stream_options.include_usage.
type FakeUpstream struct {
	// Words are the completion, one chunk each.
	Words []string
	// PromptTokens, CachedTokens and CompletionTokens are the usage reported.
	PromptTokens, CachedTokens, CompletionTokens int
	// ChunkDelay is the pause between chunks.
	ChunkDelay time.Duration
	// AfterFirstChunk, if set, is waited on after the first chunk (tests
	// use it to see that the relay streams rather than buffers).
	AfterFirstChunk chan struct{}
}

// NewFakeUpstream returns the canned provider used by the example and its
// test: 5 words; 1000 prompt tokens (200 cached) and 500 completion tokens,
// which gpt-4o-mini prices at 800 × 0.15 + 200 × 0.075 + 500 × 0.60 per
// million = $0.000435.
func NewFakeUpstream() *FakeUpstream {
	return &FakeUpstream{
		Words:        []string{"Hello", " from", " the", " fake", " upstream"},
		PromptTokens: 1000, CachedTokens: 200, CompletionTokens: 500,
		ChunkDelay: 2 * time.Millisecond,
	}
}

func (f *FakeUpstream) usage() map[string]any {
	return map[string]any{
		"prompt_tokens":             f.PromptTokens,
		"completion_tokens":         f.CompletionTokens,
		"total_tokens":              f.PromptTokens + f.CompletionTokens,
		"prompt_tokens_details":     map[string]any{"cached_tokens": f.CachedTokens},
		"completion_tokens_details": map[string]any{"reasoning_tokens": 0},
	}
}

func (f *FakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model         string `json:"model"`
		Stream        bool   `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, r)
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, `{"error":{"message":"bad json"}}`, http.StatusBadRequest)
		return
	}
	id := fmt.Sprintf("chatcmpl-fake-%d", time.Now().UnixNano())
	created := time.Now().Unix()
	if !req.Stream {
		text := ""
		for _, w := range f.Words {
			text += w
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": req.Model,
			"choices": []any{map[string]any{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": text},
				"finish_reason": "stop",
			}},
			"usage": f.usage(),
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		_ = rc.Flush()
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		c := map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}
		if req.StreamOptions.IncludeUsage {
			c["usage"] = nil
		}
		return c
	}
	send(chunk(map[string]any{"role": "assistant", "content": ""}, nil))
	for i, word := range f.Words {
		send(chunk(map[string]any{"content": word}, nil))
		if i == 0 && f.AfterFirstChunk != nil {
			select {
			case <-f.AfterFirstChunk:
			case <-r.Context().Done():
				return
			}
		}
		time.Sleep(f.ChunkDelay)
	}
	send(chunk(map[string]any{}, "stop"))
	if req.StreamOptions.IncludeUsage {
		send(map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{}, "usage": f.usage(),
		})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	_ = rc.Flush()
}
