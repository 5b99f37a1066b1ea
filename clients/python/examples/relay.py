"""A minimal OpenAI-compatible streaming relay metered by metering (stdlib only).

    POST /v1/chat/completions      (Authorization: Bearer <account id>)

For each call the relay
  1. asks metering for an estimate of the prompt (EstimateTokens with the raw
     request body) and refuses the call if the account is exhausted,
  2. forwards the request to the upstream and streams the SSE chunks back
     as they arrive, keeping the last 64 KiB (the tail carries the usage),
  3. at stream end, records the usage: RecordUsage with response_json = the
     SSE tail (the service extracts the usage), request_id = the upstream's
     completion id, plus the raw request body and the streamed text
     (request_json, completion_text): when the stream carried no usage the
     service estimates it from them (usage_source ESTIMATED) instead of
     recording MISSING. With --spool, the record goes through a durable
     UsageReporter instead (batched, survives restarts of the relay).

A fake upstream that streams canned chat.completion.chunk events (with a final
usage chunk when the request sets stream_options.include_usage) is included,
for trying it out:

    python relay.py --fake-upstream --metering 127.0.0.1:50051 --listen 127.0.0.1:8080
    curl -N http://127.0.0.1:8080/v1/chat/completions -H 'Authorization: Bearer acme' \
      -d '{"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "Say hi"}]}'
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from metering_client import (
    MeteringClient,
    MeteringError,
    UsageReporter,
    record_request_from_response,
)

TAIL_BYTES = 64 * 1024
CANNED = ["Hello", "!", " How", " can", " I", " help", "?"]
CANNED_PROMPT_TOKENS = 12


# -- the fake upstream -------------------------------------------------------------------


class FakeUpstream(BaseHTTPRequestHandler):
    """Streams canned chat.completion.chunk events, like OpenAI's API."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        model = body.get("model", "gpt-4o-mini")
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        usage = {
            "prompt_tokens": CANNED_PROMPT_TOKENS,
            "completion_tokens": len(CANNED),
            "total_tokens": CANNED_PROMPT_TOKENS + len(CANNED),
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model}  # fmt: skip
        if not body.get("stream"):
            payload = json.dumps({
                "id": cid, "object": "chat.completion", "created": base["created"],
                "model": model, "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(CANNED)}}],
            }).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events: list[dict[str, Any]] = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        ]
        events += [{**base, "choices": [{"index": 0, "delta": {"content": t}}]} for t in CANNED]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        for event in events:
            if include_usage:
                event["usage"] = None
            self._event(json.dumps(event))
        if include_usage:
            self._event(json.dumps({**base, "choices": [], "usage": usage}))
        self._event("[DONE]")
        self.close_connection = True

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()
        time.sleep(0.001)


# -- the relay -----------------------------------------------------------------------------


class Relay(BaseHTTPRequestHandler):
    """The relay's handler; the server carries ``upstream``, ``metering`` and ``reporter``."""

    protocol_version = "HTTP/1.1"
    server: RelayServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _error(self, status: int, message: str) -> None:
        payload = json.dumps({"error": {"message": message}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        if self.path != "/v1/chat/completions":
            return self._error(404, "not found")
        auth = self.headers.get("Authorization", "")
        account = auth.removeprefix("Bearer ").strip()
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
            model = body["model"]
        except (ValueError, KeyError, TypeError):
            return self._error(400, "a JSON body with a model is required")
        if not account:
            return self._error(401, "Authorization: Bearer <account> is required")
        metering = self.server.metering

        # 1. Before the call: estimate, and refuse an exhausted prepaid account.
        try:
            balance = metering.get_balance(account_id=account)
            estimate = metering.estimate_tokens(model=model, request_json=raw, account_id=account)
        except MeteringError as err:
            return self._error(402 if err.reason == "ACCOUNT_NOT_FOUND" else 503, str(err))
        if balance.balance_exhausted:
            return self._error(402, "balance exhausted")

        # 2. The call, streamed through.
        upstream = urllib.request.Request(
            self.server.upstream + "/v1/chat/completions",
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        try:
            resp = urllib.request.urlopen(upstream, timeout=60)
        except urllib.error.URLError as exc:
            return self._error(502, f"upstream: {exc}")
        streamed = bool(body.get("stream"))
        tail = bytearray()
        completion_id = ""
        completion: list[str] = []  # the streamed deltas, for an estimate without usage
        with resp:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.headers.get("Content-Type", "text/plain"))
            self.send_header("X-Metering-Estimated-Input-Tokens", str(estimate.input_tokens))
            self.send_header("Connection", "close")
            self.end_headers()
            for line in resp:  # SSE lines, or the whole JSON body
                self.wfile.write(line)
                self.wfile.flush()
                tail += line
                del tail[:-TAIL_BYTES]
                if not completion_id and b'"id"' in line:
                    completion_id = _completion_id(line)
                if streamed:
                    completion.append(_delta_text(line))
        self.close_connection = True

        # 3. At stream end: record, with the raw tail; the service extracts the usage.
        request = record_request_from_response(
            bytes(tail),
            account_id=account,
            request_id=completion_id or "relay-" + uuid.uuid4().hex,
            model=model,
            response_format="OPENAI_CHAT_COMPLETIONS",
            provider="openai",
            streamed=streamed,
            service="example-relay",
            # Ignored when the tail carries usage; estimated from otherwise.
            request_json=raw,
            request_format="OPENAI_CHAT_COMPLETIONS",
            completion_text="".join(completion),
        )
        if self.server.reporter is not None:
            self.server.reporter.report(request)  # durable; sent in the background
        else:
            try:
                self.server.last_record = metering.record_usage(request)
            except MeteringError as err:  # the client already has its answer: log only
                print(f"relay: could not record {request.request_id}: {err}")


def _completion_id(line: bytes) -> str:
    text = line.decode(errors="replace").strip().removeprefix("data:").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return ""
    return str(obj.get("id", "")) if isinstance(obj, dict) else ""


def _delta_text(line: bytes) -> str:
    """The text of one chat.completion.chunk SSE line ("" for anything else)."""
    if not line.startswith(b"data: {"):
        return ""
    try:
        obj = json.loads(line[6:])
    except ValueError:
        return ""
    choices = obj.get("choices") if isinstance(obj, dict) else None
    return "".join(
        str((c.get("delta") or {}).get("content") or "")
        for c in choices or ()
        if isinstance(c, dict)
    )


class RelayServer(ThreadingHTTPServer):
    """The relay's HTTP server, holding its configuration."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        upstream: str,
        metering: MeteringClient,
        reporter: UsageReporter | None = None,
    ) -> None:
        super().__init__(address, Relay)
        self.upstream = upstream.rstrip("/")
        self.metering = metering
        self.reporter = reporter
        self.last_record: Any = None


def serve_in_thread(server: ThreadingHTTPServer) -> str:
    """Serve in a daemon thread; return the base URL."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def fake_upstream(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """The canned upstream (not started)."""
    server = ThreadingHTTPServer((host, port), FakeUpstream)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--upstream", default="https://api.openai.com")
    parser.add_argument("--fake-upstream", action="store_true", help="use the canned upstream")
    parser.add_argument("--metering", default="127.0.0.1:50051")
    parser.add_argument("--spool", help="record through a durable UsageReporter at this file")
    args = parser.parse_args()
    upstream = args.upstream
    if args.fake_upstream:
        upstream = serve_in_thread(fake_upstream())
    metering = MeteringClient(args.metering)
    reporter = UsageReporter(metering, args.spool) if args.spool else None
    host, port = args.listen.rsplit(":", 1)
    relay = RelayServer((host, int(port)), upstream, metering, reporter)
    print(f"relay listening on http://{host}:{relay.server_address[1]} -> {upstream}", flush=True)
    try:
        relay.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        relay.server_close()
        if reporter is not None:
            reporter.close()
        metering.close()


if __name__ == "__main__":
    main()
