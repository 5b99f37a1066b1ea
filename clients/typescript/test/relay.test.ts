// End to end: caller -> examples/relay.ts -> fake upstream, metered by a real server.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { StreamText, createRelay } from "../examples/relay";
import { CANNED_TEXT, startFakeUpstream, type FakeUpstream } from "../examples/fake-upstream";
import { ApiFormat, MeteringClient, UsageReporter, UsageSource, type RecordUsageResponse } from "../src";
import { MeteringServer, eventually, runPrefix } from "./helpers/server";

// 1000 uncached x 0.15 + 200 cached x 0.075 + 300 x 0.60 per million.
const COST = 345_000;

function nanosOf(m?: { units: string; nanos: number }): number {
  return m ? Number(m.units) * 1e9 + m.nanos : 0;
}

describe("example relay", () => {
  let server: MeteringServer;
  let client: MeteringClient;
  let reporter: UsageReporter;
  let upstream: FakeUpstream;
  let relay: http.Server;
  let relayUrl: string;
  let dir: string;
  const acct = runPrefix("relay");
  const prepaid = `${acct}-prepaid`;
  const recorded: RecordUsageResponse[] = [];

  before(async () => {
    server = await MeteringServer.start();
    client = new MeteringClient({ address: server.address });
    await client.createAccount({ accountId: acct });
    await client.grantCredits({ accountId: acct, requestId: "topup-1", amount: { currencyCode: "USD", units: "5" } });
    await client.createAccount({ accountId: prepaid });
    await client.grantCredits({ accountId: prepaid, requestId: "topup-1", amount: { currencyCode: "USD", nanos: 100_000 } });
    dir = mkdtempSync(path.join(os.tmpdir(), "metering-relay-"));
    reporter = await UsageReporter.open({ client, spoolPath: path.join(dir, "usage.spool"), flushIntervalMs: 20 });
    reporter.on("recorded", (_req, res) => recorded.push(res));
    upstream = await startFakeUpstream();
    const keys = new Map([
      ["sk-relay-test-0001", acct],
      ["sk-relay-prepaid-02", prepaid],
    ]);
    relay = createRelay({ upstreamUrl: upstream.url, client, reporter, accountFor: (k) => keys.get(k) });
    await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
    relayUrl = `http://127.0.0.1:${(relay.address() as AddressInfo).port}`;
  });

  after(async () => {
    relay?.closeAllConnections();
    await new Promise((r) => relay?.close(r));
    await upstream?.close();
    await reporter?.close();
    client?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function chat(body: Record<string, unknown>, key = "sk-relay-test-0001") {
    const res = await fetch(`${relayUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });
    return { res, text: await res.text() };
  }

  function sseData(text: string): unknown[] {
    return text
      .split("\n\n")
      .filter((e) => e.startsWith("data: ") && e !== "data: [DONE]")
      .map((e) => JSON.parse(e.slice(6)));
  }

  async function nextRecord(): Promise<RecordUsageResponse> {
    const n = recorded.length;
    await eventually(async () => recorded.length > n, 10_000, 20);
    return recorded[n]!;
  }

  const messages = [{ role: "user", content: "Say hello to the world." }];

  it("streams through, with an estimate first and the usage chunk recorded at stream end", async () => {
    const before = nanosOf((await client.getBalance(acct)).balance);
    const wait = nextRecord();
    const { res, text } = await chat({ model: "gpt-4o-mini", stream: true, messages });
    assert.equal(res.status, 200);
    assert.ok(Number(res.headers.get("x-metering-estimated-input-tokens")) > 0, "estimate header");
    const events = sseData(text) as { choices: { delta: { content?: string } }[]; usage?: unknown }[];
    assert.equal(events.map((e) => e.choices[0]?.delta.content ?? "").join(""), CANNED_TEXT.join(""));
    assert.ok(text.trimEnd().endsWith("data: [DONE]"));
    // The caller did not ask for usage: the relay asked upstream and stripped the chunk.
    assert.ok(events.every((e) => e.choices.length > 0), "no usage-only chunk forwarded");
    assert.deepEqual(upstream.requests.at(-1)!.stream_options, { include_usage: true });

    const rec = await wait;
    assert.equal(rec.usageSource, UsageSource.USAGE_SOURCE_REPORTED);
    assert.deepEqual(rec.usage, {
      inputTokens: "1200", outputTokens: "300", cacheReadTokens: "200", cacheWriteTokens: "0",
      cacheWrite1hTokens: "0", reasoningTokens: "0",
    });
    assert.equal(nanosOf(rec.cost), COST);
    assert.equal(nanosOf((await client.getBalance(acct)).balance), before - COST);
  });

  it("forwards the usage chunk when the caller asks for it", async () => {
    const wait = nextRecord();
    const { text } = await chat({ model: "gpt-4o-mini", stream: true, stream_options: { include_usage: true }, messages });
    const events = sseData(text) as { choices: unknown[]; usage?: { prompt_tokens: number } }[];
    assert.equal(events.at(-1)!.usage?.prompt_tokens, 1200);
    assert.equal(nanosOf((await wait).cost), COST);
  });

  it("records a stream without a usage chunk as ESTIMATED from the request body and the streamed text", async () => {
    upstream.options.usage = "never";
    try {
      const before = nanosOf((await client.getBalance(acct)).balance);
      const wait = nextRecord();
      const { res, text } = await chat({ model: "gpt-4o-mini", stream: true, messages });
      assert.equal(res.status, 200);
      const events = sseData(text) as { choices: { delta: { content?: string } }[]; usage?: unknown }[];
      assert.ok(events.every((e) => !e.usage), "no usage in the stream");
      const streamed = events.map((e) => e.choices[0]?.delta.content ?? "").join("");
      assert.equal(streamed, CANNED_TEXT.join(""));
      const rec = await wait;
      // The relay sent the body it forwarded upstream and the text it streamed:
      // the service counted them as EstimateTokens does.
      assert.equal(rec.usageSource, UsageSource.USAGE_SOURCE_ESTIMATED);
      const expected = await client.estimateTokens({
        model: "gpt-4o-mini",
        requestJson: Buffer.from(JSON.stringify(upstream.requests.at(-1))),
        requestFormat: ApiFormat.API_FORMAT_OPENAI_CHAT_COMPLETIONS,
        completionText: streamed,
      });
      assert.ok(Number(expected.outputTokens) > 0 && Number(expected.inputTokens) > 0, JSON.stringify(expected));
      assert.equal(rec.usage?.outputTokens, expected.outputTokens);
      assert.equal(rec.usage?.inputTokens, expected.inputTokens);
      assert.ok(nanosOf(rec.cost) > 0 && !rec.replayed);
      assert.equal(nanosOf(rec.cost), nanosOf(expected.estimatedCost));
      assert.equal(nanosOf((await client.getBalance(acct)).balance), before - nanosOf(rec.cost));
    } finally {
      upstream.options.usage = "when-asked";
    }
  });

  it("meters a non-streamed call from its response body", async () => {
    const wait = nextRecord();
    const { res, text } = await chat({ model: "gpt-4o-mini", messages });
    assert.equal(res.status, 200);
    assert.equal((JSON.parse(text) as { object: string }).object, "chat.completion");
    const rec = await wait;
    assert.equal(rec.usageSource, UsageSource.USAGE_SOURCE_REPORTED);
    assert.equal(nanosOf(rec.cost), COST);
  });

  it("refuses an unknown key, and a prepaid account once its balance is exhausted", async () => {
    assert.equal((await chat({ model: "gpt-4o-mini", stream: true, messages }, "sk-nope")).res.status, 401);
    const wait = nextRecord();
    const first = await chat({ model: "gpt-4o-mini", stream: true, messages }, "sk-relay-prepaid-02");
    assert.equal(first.res.status, 200);
    const rec = await wait;
    assert.equal(rec.balanceExhausted, true, "0.0001 USD cannot cover 0.000345");
    const second = await chat({ model: "gpt-4o-mini", stream: true, messages }, "sk-relay-prepaid-02");
    assert.equal(second.res.status, 402);
  });

  it("has every call in the usage summary, grouped by usage source", async () => {
    await reporter.flush();
    const now = Date.now();
    const sum = await client.usageSummary({
      accountId: acct,
      startTime: new Date(now - 3600_000),
      endTime: new Date(now + 3600_000),
      groupBy: [5 /* GROUP_BY_USAGE_SOURCE */],
    });
    assert.equal(sum.totals?.requestCount, "4");
    const bySource = Object.fromEntries(sum.rows.map((r) => [r.usageSource, r.requestCount]));
    assert.deepEqual(bySource, { [UsageSource.USAGE_SOURCE_REPORTED]: "3", [UsageSource.USAGE_SOURCE_ESTIMATED]: "1" });
  });

  it("collects the streamed text from chunks cut anywhere", () => {
    const stream =
      'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n' +
      'data: {"choices":[{"delta":{"content":"Héllo"}}]}\r\n\r\n' +
      ": a comment\n\n" +
      'data: {"choices":[{"delta":{"content":null}}]}\n\n' +
      'data: {"choices":[{"delta":{"content":", world"}}]}\n\n' +
      'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n' +
      "data: [DONE]\n\n";
    const bytes = Buffer.from(stream, "utf8");
    for (const size of [1, 2, 7, 64, bytes.length]) {
      const t = new StreamText();
      for (let i = 0; i < bytes.length; i += size) t.push(bytes.subarray(i, i + size));
      assert.equal(t.value(), "Héllo, world", `pieces of ${size} bytes`);
    }
  });
});
