// A fake OpenAI-compatible upstream for the example relay: POST
// /v1/chat/completions answers with canned chat.completion(.chunk)s. Streams
// end with a usage chunk when the request sets stream_options.include_usage
// (like OpenAI), unless the upstream is told never to send usage (like some
// compatible providers).
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export interface FakeUpstreamOptions {
  /** "when-asked" (default): a usage chunk iff stream_options.include_usage; "never": no usage at all. */
  usage?: "when-asked" | "never";
  /** Token counts it reports (default 1200 prompt, 200 of them cached, 300 completion). */
  promptTokens?: number;
  cachedTokens?: number;
  completionTokens?: number;
  /** Delay between chunks, ms (default 2). */
  chunkDelayMs?: number;
}

export interface FakeUpstream {
  url: string;
  server: http.Server;
  options: FakeUpstreamOptions;
  /** Requests received (parsed bodies). */
  requests: Record<string, unknown>[];
  close(): Promise<void>;
}

export const CANNED_TEXT = ["Hello", ", ", "world", "!"];

export async function startFakeUpstream(options: FakeUpstreamOptions = {}, port = 0): Promise<FakeUpstream> {
  const requests: Record<string, unknown>[] = [];
  let n = 0;
  const server = http.createServer(async (req, res) => {
    if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
    requests.push(body);
    const o = { usage: "when-asked", promptTokens: 1200, cachedTokens: 200, completionTokens: 300, chunkDelayMs: 2, ...options };
    const id = `chatcmpl-fake-${process.pid}-${++n}-${Date.now().toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = String(body.model ?? "gpt-4o-mini");
    const usage = {
      prompt_tokens: o.promptTokens,
      completion_tokens: o.completionTokens,
      total_tokens: o.promptTokens + o.completionTokens,
      prompt_tokens_details: { cached_tokens: o.cachedTokens, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 },
    };
    if (!body.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created,
          model,
          choices: [{ index: 0, message: { role: "assistant", content: CANNED_TEXT.join("") }, finish_reason: "stop" }],
          ...(o.usage === "never" ? {} : { usage }),
        }),
      );
      return;
    }
    const includeUsage =
      o.usage === "when-asked" && (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, system_fingerprint: "fp_fake", choices, ...(includeUsage ? { usage: null } : {}), ...extra })}\n\n`;
    const events = [
      chunk([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]),
      ...CANNED_TEXT.map((t) => chunk([{ index: 0, delta: { content: t }, logprobs: null, finish_reason: null }])),
      chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }]),
      ...(includeUsage ? [chunk([], { usage })] : []),
      "data: [DONE]\n\n",
    ];
    for (const e of events) {
      if (res.destroyed) return;
      res.write(e);
      await new Promise((r) => setTimeout(r, o.chunkDelayMs));
    }
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const addr = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    server,
    options,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
