// A minimal OpenAI-compatible streaming relay metered with @metering/client.
//
// POST /v1/chat/completions with "Authorization: Bearer <key>": the key names
// the account; the relay asks metering for an estimate (EstimateTokens) and
// the balance, forwards the call upstream, streams the answer back and, at
// stream end, hands the raw SSE tail to the UsageReporter (RecordUsage via
// RecordUsageBatch; the server extracts the usage; spooled if metering is
// down), with the request body it forwarded and the text it streamed: when
// the stream carried no usage the server estimates it from them
// (USAGE_SOURCE_ESTIMATED) instead of recording MISSING.
//
//   METERING_ADDRESS=127.0.0.1:50051 API_KEYS=sk-test=acme npx tsx examples/relay.ts
//   (without UPSTREAM_URL it starts the fake upstream of fake-upstream.ts)
import { randomUUID } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { StringDecoder } from "node:string_decoder";
import {
  MAX_TEXT_CHARS,
  MeteringClient,
  SseTail,
  UsageReporter,
  estimateFromRequest,
  recordUsageFromResponse,
} from "../src";

export interface RelayOptions {
  /** Base URL of the OpenAI-compatible upstream, e.g. "https://api.openai.com" or a fake one. */
  upstreamUrl: string;
  /** Sent upstream as the bearer token. */
  upstreamApiKey?: string;
  client: MeteringClient;
  reporter: UsageReporter;
  /** The account of a relay API key; undefined refuses the call (401). */
  accountFor(apiKey: string): string | undefined;
  provider?: string;
  /** The relay's service name, for UsageSummary grouping. */
  service?: string;
}

const MAX_BODY = 4 * 1024 * 1024;

export function createRelay(opts: RelayOptions): http.Server {
  return http.createServer((req, res) => {
    handle(opts, req, res).catch((e) => {
      console.error("relay error:", e);
      if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "relay error", type: "relay_error" } }));
    });
  });
}

function sendError(res: http.ServerResponse, status: number, message: string, type: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: { message, type } }));
}

async function handle(opts: RelayOptions, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (req.method !== "POST" || req.url !== "/v1/chat/completions") return sendError(res, 404, "not found", "invalid_request_error");
  const apiKey = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? "";
  const accountId = opts.accountFor(apiKey);
  if (!accountId) return sendError(res, 401, "invalid API key", "invalid_request_error");

  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) return sendError(res, 413, "request too large", "invalid_request_error");
    chunks.push(c as Buffer);
  }
  const raw = Buffer.concat(chunks);
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
  } catch {
    return sendError(res, 400, "body is not JSON", "invalid_request_error");
  }
  const model = String(body.model ?? "");
  const streamed = body.stream === true;
  const relayRequestId = `relay-${randomUUID()}`;

  // Before the call: estimate and balance. Metering being down must not take
  // the relay down, so failures here are logged and the call goes on.
  const headers: Record<string, string> = { "x-relay-request-id": relayRequestId };
  try {
    const [estimate, balance] = await Promise.all([
      opts.client.estimateTokens(estimateFromRequest({ body: raw, accountId, format: "openai-chat" }), { retry: { maxAttempts: 1 } }),
      opts.client.getBalance(accountId, { retry: { maxAttempts: 1 } }),
    ]);
    if (balance.balanceExhausted) return sendError(res, 402, "balance exhausted: add credits", "insufficient_quota");
    headers["x-metering-estimated-input-tokens"] = estimate.inputTokens;
    if (estimate.worstCaseCost) {
      headers["x-metering-worst-case-cost-nanos"] = String(
        BigInt(estimate.worstCaseCost.units) * 1_000_000_000n + BigInt(estimate.worstCaseCost.nanos),
      );
    }
  } catch (e) {
    console.warn(`metering pre-check skipped: ${(e as Error).message}`);
  }

  // Ask the upstream for the usage chunk; strip it again if the caller did not ask.
  const callerAskedUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
  if (streamed && !callerAskedUsage) body.stream_options = { ...(body.stream_options as object), include_usage: true };

  const upstreamBody = JSON.stringify(body);
  const upstream = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const u = new URL("/v1/chat/completions", opts.upstreamUrl);
    const up = http.request(u, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(opts.upstreamApiKey ? { authorization: `Bearer ${opts.upstreamApiKey}` } : {}),
      },
    });
    up.on("response", resolve);
    up.on("error", reject);
    res.on("close", () => up.destroy()); // the caller went away: stop the upstream call
    up.end(upstreamBody);
  });

  const record = {
    accountId, model, provider: opts.provider ?? "openai", apiKeyId: apiKeyIdOf(apiKey), service: opts.service ?? "example-relay",
    // For an estimate when the response carries no usage; ignored when it does.
    requestBody: upstreamBody, requestFormat: "openai-chat" as const,
  };

  if (upstream.statusCode !== 200) {
    // Provider errors are not billed: pass them through, record nothing.
    res.writeHead(upstream.statusCode ?? 502, { "content-type": upstream.headers["content-type"] ?? "application/json" });
    upstream.pipe(res);
    return;
  }

  if (!streamed) {
    const parts: Buffer[] = [];
    for await (const c of upstream) parts.push(c as Buffer);
    const out = Buffer.concat(parts);
    res.writeHead(200, { "content-type": "application/json", ...headers });
    res.end(out);
    await opts.reporter.report(recordUsageFromResponse({ ...record, response: out, format: "openai-chat" }));
    return;
  }

  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", ...headers });
  const tail = new SseTail(); // keeps the last events (the usage chunk) for metering
  const text = new StreamText(); // the streamed deltas, for an estimate without usage
  let pending = "";
  let reported = false;
  const report = () => {
    if (reported) return;
    reported = true;
    // ---- the metering call at stream end: one line ----
    void opts.reporter.report(
      recordUsageFromResponse({ ...record, response: tail, format: "openai-chat", completionText: text.value() }),
    );
  };
  upstream.on("data", (c: Buffer) => {
    tail.push(c);
    text.push(c);
    if (callerAskedUsage) {
      res.write(c);
      return;
    }
    // Forward whole events, dropping the usage-only chunk the caller did not ask for.
    pending += c.toString("utf8");
    let i: number;
    while ((i = pending.indexOf("\n\n")) >= 0) {
      const event = pending.slice(0, i + 2);
      pending = pending.slice(i + 2);
      if (!isUsageOnlyChunk(event)) res.write(event);
    }
  });
  upstream.on("end", () => {
    if (pending) res.write(pending);
    res.end();
    report();
  });
  // A caller that disconnects mid-stream is still metered with what the upstream produced.
  upstream.on("close", report);
  upstream.on("error", report);
}

/**
 * Collects the text of a chat.completion.chunk stream as it is relayed: the
 * choices' delta contents, in order (bounded by MAX_TEXT_CHARS characters).
 */
export class StreamText {
  private decoder = new StringDecoder("utf8");
  private line = "";
  private parts: string[] = [];
  private length = 0;

  push(chunk: Buffer | string): void {
    const lines = (this.line + (typeof chunk === "string" ? chunk : this.decoder.write(chunk))).split("\n");
    this.line = lines.pop()!;
    if (this.line.length > MAX_BODY) this.line = ""; // no event is this long: not SSE
    for (const l of lines) this.add(l);
  }

  private add(line: string): void {
    const data = /^data:\s*(\{.*)$/.exec(line.replace(/\r$/, ""))?.[1];
    if (!data || this.length >= MAX_TEXT_CHARS) return;
    try {
      const o = JSON.parse(data) as { choices?: { delta?: { content?: unknown } }[] };
      for (const c of Array.isArray(o.choices) ? o.choices : []) {
        const content = c?.delta?.content;
        if (typeof content === "string" && content) {
          this.parts.push(content);
          this.length += content.length;
        }
      }
    } catch {
      // not JSON: ignore
    }
  }

  /** The text so far. */
  value(): string {
    return this.parts.join("");
  }
}

function isUsageOnlyChunk(event: string): boolean {
  const data = /^data: (.*)$/m.exec(event)?.[1];
  if (!data || data === "[DONE]") return false;
  try {
    const o = JSON.parse(data) as { choices?: unknown[]; usage?: unknown };
    return Array.isArray(o.choices) && o.choices.length === 0 && !!o.usage;
  } catch {
    return false;
  }
}

/** A stable, non-secret id of an API key for grouping (never send the key itself). */
function apiKeyIdOf(key: string): string {
  return key.length > 8 ? `${key.slice(0, 3)}...${key.slice(-4)}` : "key";
}

async function main(): Promise<void> {
  const client = new MeteringClient({ address: process.env.METERING_ADDRESS ?? "127.0.0.1:50051" });
  const reporter = await UsageReporter.open({ client, spoolPath: process.env.SPOOL_PATH ?? "./usage.spool" });
  const keys = new Map(
    (process.env.API_KEYS ?? "sk-test=acme").split(",").map((kv) => kv.split("=") as [string, string]),
  );
  let upstreamUrl = process.env.UPSTREAM_URL;
  if (!upstreamUrl) {
    const { startFakeUpstream } = await import("./fake-upstream");
    upstreamUrl = (await startFakeUpstream()).url;
    console.log(`fake upstream on ${upstreamUrl}`);
  }
  const server = createRelay({ upstreamUrl, upstreamApiKey: process.env.UPSTREAM_API_KEY, client, reporter, accountFor: (k) => keys.get(k) });
  server.listen(Number(process.env.PORT ?? 8080), "127.0.0.1", () => {
    console.log(`relay listening on 127.0.0.1:${(server.address() as AddressInfo).port}`);
  });
  const shutdown = async () => {
    server.close();
    await reporter.close(); // sends what it can, spools the rest for the next start
    client.close();
    process.exit(0);
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
