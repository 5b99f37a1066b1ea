// recordUsageFromResponse / SseTail / estimateFromRequest, checked against the
// real server's extraction.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  ApiFormat,
  EstimateMethod,
  MeteringClient,
  MissingUsageFallback,
  RecordUsageRequest,
  SseTail,
  UsageSource,
  estimateFromRequest,
  recordUsageFromResponse,
} from "../src";
import { MeteringServer, runPrefix } from "./helpers/server";

function sse(events: unknown[], named = false): string {
  return events
    .map((e) => {
      const type = named ? `event: ${(e as { type: string }).type}\n` : "";
      return `${type}data: ${typeof e === "string" ? e : JSON.stringify(e)}\n\n`;
    })
    .join("");
}

function openaiStream(id: string, deltas: number, withUsage: boolean): string {
  const chunk = (choices: unknown[], extra = {}) => ({ id, object: "chat.completion.chunk", created: 1, model: "gpt-4o-mini", choices, ...extra });
  return sse([
    chunk([{ index: 0, delta: { role: "assistant", content: "" } }]),
    ...Array.from({ length: deltas }, (_, i) => chunk([{ index: 0, delta: { content: `token ${i} ` } }])),
    chunk([{ index: 0, delta: {}, finish_reason: "stop" }]),
    ...(withUsage ? [chunk([], { usage: { prompt_tokens: 2000, completion_tokens: 100, total_tokens: 2100, prompt_tokens_details: { cached_tokens: 1000 } } })] : []),
    "[DONE]",
  ]);
}

function anthropicStream(id: string, deltas: number): string {
  return sse(
    [
      {
        type: "message_start",
        message: {
          id, type: "message", role: "assistant", model: "claude-sonnet-4-5", content: [],
          usage: { input_tokens: 50, cache_read_input_tokens: 100, cache_creation_input_tokens: 0, output_tokens: 1 },
        },
      },
      { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
      ...Array.from({ length: deltas }, (_, i) => ({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: `word ${i} ` } })),
      { type: "content_block_stop", index: 0 },
      { type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { output_tokens: 200 } },
      { type: "message_stop" },
    ],
    true,
  );
}

/** Feeds text to an SseTail in uneven chunks, as a socket would. */
function feed(text: string, tail = new SseTail()): SseTail {
  const buf = Buffer.from(text);
  for (let i = 0; i < buf.length; ) {
    const n = 1 + ((i * 7919) % 1500);
    tail.push(buf.subarray(i, i + n));
    i += n;
  }
  return tail;
}

describe("SseTail", () => {
  it("keeps a short stream whole, with its id and model", () => {
    const text = openaiStream("chatcmpl-short", 3, true);
    const t = feed(text);
    assert.equal(t.bytes().toString(), text);
    assert.equal(t.id, "chatcmpl-short");
    assert.equal(t.model, "gpt-4o-mini");
  });

  it("bounds a long stream to the first event plus whole last events", () => {
    const text = openaiStream("chatcmpl-long", 20_000, true);
    const t = feed(text, new SseTail(32 * 1024));
    const out = t.bytes().toString();
    assert.ok(text.length > 1_000_000);
    assert.ok(out.length <= 32 * 1024);
    assert.ok(out.startsWith('data: {"id":"chatcmpl-long"'), "first event kept");
    assert.ok(out.endsWith("data: [DONE]\n\n"));
    assert.ok(out.includes('"prompt_tokens":2000'), "usage chunk kept");
    for (const e of out.split("\n\n").filter(Boolean)) assert.ok(e.startsWith("data: "), `whole event: ${e.slice(0, 40)}`);
  });
});

describe("recordUsageFromResponse against the server", () => {
  let server: MeteringServer;
  let client: MeteringClient;
  const acct = runPrefix("raw");

  before(async () => {
    server = await MeteringServer.start();
    client = new MeteringClient({ address: server.address });
    await client.createAccount({ accountId: acct, allowNegativeBalance: true });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  it("records a long OpenAI stream from its bounded tail", async () => {
    const tail = feed(openaiStream("chatcmpl-ts-long-1", 20_000, true));
    const req = recordUsageFromResponse({ accountId: acct, provider: "openai", response: tail, format: "openai-chat" });
    assert.equal(req.requestId, "chatcmpl-ts-long-1");
    assert.equal(req.model, "gpt-4o-mini");
    assert.equal(req.streamed, true);
    assert.ok(req.eventTime instanceof Date);
    const res = await client.recordUsage(req);
    assert.equal(res.usageSource, UsageSource.USAGE_SOURCE_REPORTED);
    assert.equal(res.usage?.inputTokens, "2000");
    assert.equal(res.usage?.cacheReadTokens, "1000");
    assert.equal(res.usage?.outputTokens, "100");
    assert.deepEqual(res.cost, { currencyCode: "USD", units: "0", nanos: 285000 });
    // The same request again (a retry, a spool replay) is a replay.
    assert.equal((await client.recordUsage(req)).replayed, true);
  });

  it("records a long Anthropic stream: input usage from message_start, output from message_delta", async () => {
    const tail = feed(anthropicStream("msg_ts_long_1", 20_000), new SseTail(32 * 1024));
    const req = recordUsageFromResponse({ accountId: acct, provider: "anthropic", response: tail });
    assert.equal(req.requestId, "msg_ts_long_1");
    assert.equal(req.model, "claude-sonnet-4-5");
    assert.equal(req.responseFormat, ApiFormat.API_FORMAT_UNSPECIFIED);
    const res = await client.recordUsage(req);
    assert.equal(res.usageSource, UsageSource.USAGE_SOURCE_REPORTED);
    assert.equal(res.usage?.inputTokens, "150");
    assert.equal(res.usage?.cacheReadTokens, "100");
    assert.equal(res.usage?.outputTokens, "200");
  });

  it("records a non-streamed body given as an object, string or bytes", async () => {
    const body = (id: string) => ({
      id, object: "chat.completion", created: 1, model: "gpt-4o-mini-2024-07-18",
      choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    });
    for (const [i, response] of [body("chatcmpl-o"), JSON.stringify(body("chatcmpl-s")), Buffer.from(JSON.stringify(body("chatcmpl-b")))].entries()) {
      const req = recordUsageFromResponse({ accountId: acct, provider: "openai", response, format: "openai-chat" });
      assert.equal(req.requestId, ["chatcmpl-o", "chatcmpl-s", "chatcmpl-b"][i]);
      assert.equal(req.model, "gpt-4o-mini-2024-07-18");
      assert.equal(req.streamed, false);
      const res = await client.recordUsage(req);
      assert.equal(res.usage?.inputTokens, "10");
      assert.equal(res.priceId, "openai/gpt-4o-mini");
    }
  });

  it("prefers the relay's request id and explicit usage when given", () => {
    const req = recordUsageFromResponse({
      accountId: acct,
      requestId: "relay-42",
      model: "gpt-4o-mini",
      response: { id: "chatcmpl-x" },
      usage: { inputTokens: "5", outputTokens: "6" },
      labels: { route: "a" },
    });
    assert.equal(req.requestId, "relay-42");
    assert.equal(req.responseJson.length, 0);
    assert.deepEqual(RecordUsageRequest.toJSON(req), {
      ...(RecordUsageRequest.toJSON(req) as object),
      usage: { inputTokens: "5", outputTokens: "6" },
      labels: { route: "a" },
    });
  });

  it("estimates a stream without usage from the request body and the streamed text", async () => {
    const text = openaiStream("chatcmpl-ts-est-1", 3, false);
    const requestBody = { model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "count to three" }] };
    const completionText = "token 0 token 1 token 2 ";
    const req = recordUsageFromResponse({
      accountId: acct, provider: "openai", response: feed(text), format: "openai-chat",
      requestBody, requestFormat: "openai-chat", completionText,
    });
    assert.equal(req.requestFormat, ApiFormat.API_FORMAT_OPENAI_CHAT_COMPLETIONS);
    assert.equal(req.completionText, completionText);
    const res = await client.recordUsage(req);
    const expected = await client.estimateTokens(
      estimateFromRequest({ body: requestBody, format: "openai-chat" }),
    );
    const out = await client.estimateTokens({ model: "gpt-4o-mini", completionText });
    assert.equal(res.usageSource, UsageSource.USAGE_SOURCE_ESTIMATED);
    assert.equal(res.usage?.inputTokens, expected.inputTokens);
    assert.equal(res.usage?.outputTokens, out.outputTokens);
    assert.ok(Number(out.outputTokens) > 0);
    // Without anything to estimate from: MISSING, with the fallback that priced it.
    const missing = await client.recordUsage(
      recordUsageFromResponse({ accountId: acct, response: feed(openaiStream("chatcmpl-ts-est-2", 3, false)), format: "openai-chat" }),
    );
    assert.equal(missing.usageSource, UsageSource.USAGE_SOURCE_MISSING);
    assert.ok(MissingUsageFallback[missing.missingUsageFallback] !== undefined);
    // Given usage wins: the estimate inputs are not sent.
    const withUsage = recordUsageFromResponse({
      accountId: acct, response: { id: "chatcmpl-x" }, usage: { inputTokens: "1" }, completionText: "x", requestBody,
    });
    assert.equal(withUsage.completionText, "");
    assert.equal(withUsage.requestJson.length, 0);
  });

  it("estimates a raw chat request", async () => {
    const est = await client.estimateTokens(
      estimateFromRequest({
        body: { model: "gpt-4o-mini", max_tokens: 1000, messages: [{ role: "user", content: "tiktoken is great!" }] },
        format: "openai-chat",
      }),
    );
    assert.equal(est.method, EstimateMethod.ESTIMATE_METHOD_EXACT);
    assert.ok(Number(est.inputTokens) > 6, "message framing counted");
    assert.equal(est.requestFormat, ApiFormat.API_FORMAT_OPENAI_CHAT_COMPLETIONS);
    assert.equal(est.maxOutputTokens, "1000");
    assert.ok(est.worstCaseCost, "worst case from the request's max_tokens");
  });
});
