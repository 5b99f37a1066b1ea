// The chaos step of clients/conformance/README.md: the server is killed while
// the reporter is sending N records and restarted on the same port and
// database; retries and the spool replay must record each exactly once.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { MeteringClient, UsageReporter, type Durability } from "../src";
import { MeteringServer, freePort, runPrefix } from "./helpers/server";

const N = 200;
const COST = 450_000n;

async function chaos(signal: NodeJS.Signals, durability: Durability): Promise<void> {
  const port = await freePort();
  const server = await MeteringServer.start({ port });
  const spoolDir = mkdtempSync(path.join(os.tmpdir(), "metering-chaos-"));
  const client = new MeteringClient({
    address: server.address,
    retry: { maxAttempts: 3, initialBackoffMs: 50, maxBackoffMs: 400 },
  });
  const account = `${runPrefix("chaos")}-chaos`;
  const now = Date.now();
  let reporter: UsageReporter | undefined;
  try {
    await client.createAccount({ accountId: account, allowNegativeBalance: true });
    reporter = await UsageReporter.open({
      client,
      spoolPath: path.join(spoolDir, "usage.spool"),
      durability,
      flushIntervalMs: 20,
      maxBatchSize: 25,
      timeoutMs: 2_000,
      replayBackoffMs: 100,
      maxReplayBackoffMs: 1_000,
    });
    const r = reporter;
    let handed = 0;
    const sending = (async () => {
      for (let i = 0; i < N; i++) {
        await r.report({
          accountId: account,
          requestId: `chaos-${String(i).padStart(4, "0")}`,
          model: "gpt-4o-mini",
          provider: "openai",
          usage: { inputTokens: "1000", outputTokens: "500" },
        });
        handed++;
        await new Promise((res) => setTimeout(res, 12));
      }
    })();

    while (handed < N / 3) await new Promise((res) => setTimeout(res, 5));
    await server.kill(signal);
    await new Promise((res) => setTimeout(res, 1_000));
    const handedWhileDown = handed;
    await server.launch(); // same port, same database
    await sending;
    assert.ok(handedWhileDown < N, "reporting spans the restart");
    assert.equal(await reporter.drain(60_000), true, `records still pending: ${reporter.pendingCount}`);
    await reporter.close();
    assert.ok(reporter.stats.failedSends > 0, "the crash was noticed");

    const sum = await client.usageSummary({
      accountId: account,
      startTime: new Date(now - 3600_000),
      endTime: new Date(now + 3600_000),
    });
    assert.equal(sum.totals?.requestCount, String(N));
    assert.equal(sum.totals?.inputTokens, String(1000 * N));
    assert.equal(sum.totals?.outputTokens, String(500 * N));
    const bal = await client.getBalance(account);
    const nanos = BigInt(bal.balance!.units) * 1_000_000_000n + BigInt(bal.balance!.nanos);
    assert.equal(nanos, -COST * BigInt(N));
    console.log(
      `chaos ${signal} ${durability}: ${N} records, ${reporter.stats.batches} batch calls, ` +
        `${reporter.stats.failedSends} failed, ${reporter.stats.spooled} spooled, ${reporter.stats.replayed} answered as replays`,
    );
  } finally {
    await reporter?.close().catch(() => undefined);
    client.close();
    await server.stop();
    rmSync(spoolDir, { recursive: true, force: true });
  }
}

describe("chaos: server crash while reporting", () => {
  it(`SIGKILL mid-way: exactly ${N} records (on-failure spool)`, () => chaos("SIGKILL", "on-failure"));
  it(`SIGKILL mid-way: exactly ${N} records (write-ahead spool)`, () => chaos("SIGKILL", "write-ahead"));
  it(`SIGTERM mid-way: exactly ${N} records`, () => chaos("SIGTERM", "on-failure"));
});
