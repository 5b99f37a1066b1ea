import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { after, before, describe, it } from "node:test";
import { MeteringClient, MeteringError, Spool, SpoolLockedError, UsageReporter, type Durability } from "../src";
import { MeteringServer, eventually, runPrefix } from "./helpers/server";

const usage = { inputTokens: "1000", outputTokens: "500" };
const COST = 450_000; // nanos per record: 1000 x 0.15 + 500 x 0.60 per million

function record(account: string, requestId: string) {
  return { accountId: account, requestId, model: "gpt-4o-mini", provider: "openai", usage };
}

async function totals(client: MeteringClient, accountId: string) {
  const s = await client.usageSummary({
    accountId,
    startTime: new Date(Date.now() - 3600_000),
    endTime: new Date(Date.now() + 3600_000),
  });
  const b = await client.getBalance(accountId);
  const nanos = BigInt(b.balance?.units ?? "0") * 1_000_000_000n + BigInt(b.balance?.nanos ?? 0);
  return { count: Number(s.totals?.requestCount ?? "0"), balanceNanos: nanos };
}

describe("Spool", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "metering-spool-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("keeps puts across reopen, forgets acks, and empties the file when all are acked", async () => {
    const p = path.join(dir, "a.spool");
    let s = await Spool.open(p);
    const seqs = await s.put([Buffer.from("one"), Buffer.from("two"), Buffer.from("three")]);
    assert.deepEqual(seqs, [1, 2, 3]);
    await s.ack([2]);
    await s.close();
    s = await Spool.open(p);
    assert.deepEqual([...s.pending().entries()].map(([k, v]) => [k, v.toString()]), [[1, "one"], [3, "three"]]);
    const [four] = await s.put([Buffer.from("four")]);
    assert.equal(four, 4, "sequence numbers continue after the highest seen");
    await s.ack([1, 3, 4]);
    assert.equal(statSync(p).size, 0);
    await s.close();
  });

  it("cuts a torn last line and skips a corrupt one", async () => {
    const p = path.join(dir, "torn.spool");
    let s = await Spool.open(p);
    await s.put([Buffer.from("kept")]);
    await s.close();
    appendFileSync(p, "garbage line\n");
    appendFileSync(p, `{"p":9,"m":"${Buffer.from("torn").toString("base64")}`); // no newline: a crash mid-write
    s = await Spool.open(p);
    assert.equal(s.corruptLines, 1);
    assert.deepEqual([...s.pending().values()].map(String), ["kept"]);
    await s.put([Buffer.from("after")]);
    await s.close();
    s = await Spool.open(p);
    assert.deepEqual([...s.pending().values()].map(String), ["kept", "after"]);
    await s.close();
  });

  it("is locked to one owner; a dead owner's lock is taken over", async () => {
    const p = path.join(dir, "locked.spool");
    const s = await Spool.open(p);
    await assert.rejects(Spool.open(p), SpoolLockedError);
    await s.close();
    writeFileSync(`${p}.lock`, "999999999"); // no such process
    const s2 = await Spool.open(p);
    await s2.close();
    assert.equal(existsSync(`${p}.lock`), false);
  });
});

describe("UsageReporter", () => {
  let server: MeteringServer;
  let client: MeteringClient;
  let dir: string;

  before(async () => {
    server = await MeteringServer.start();
    client = new MeteringClient({ address: server.address });
    dir = mkdtempSync(path.join(os.tmpdir(), "metering-reporter-"));
  });
  after(async () => {
    client?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("batches records into RecordUsageBatch calls", async () => {
    const acct = runPrefix("batch");
    await client.createAccount({ accountId: acct, allowNegativeBalance: true });
    const reporter = await UsageReporter.open({ client, maxBatchSize: 100, flushIntervalMs: 50 });
    const recorded: string[] = [];
    reporter.on("recorded", (req) => recorded.push(req.requestId));
    for (let i = 0; i < 250; i++) await reporter.report(record(acct, `b-${i}`));
    await reporter.flush();
    await reporter.close();
    assert.equal(recorded.length, 250);
    assert.ok(reporter.stats.batches <= 4, `batches: ${reporter.stats.batches}`);
    assert.deepEqual(await totals(client, acct), { count: 250, balanceNanos: BigInt(-250 * COST) });
  });

  it("rejects records the service refuses for good, without holding up the others", async () => {
    const acct = runPrefix("rej");
    await client.createAccount({ accountId: acct, allowNegativeBalance: true });
    const spoolPath = path.join(dir, "rej.spool");
    const reporter = await UsageReporter.open({ client, spoolPath });
    const rejected: MeteringError[] = [];
    reporter.on("rejected", (_req, err) => rejected.push(err));
    await reporter.report(record(acct, "ok-1"));
    await reporter.report({ ...record(acct, "bad-1"), model: "no-such-model" });
    await reporter.report(record(acct, "ok-2"));
    await reporter.close();
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.reason, "PRICE_NOT_FOUND");
    const lines = readFileSync(`${spoolPath}.rejected.jsonl`, "utf8").trim().split("\n");
    assert.equal(lines.length, 1);
    const line = JSON.parse(lines[0]!);
    assert.equal(line.request.requestId, "bad-1");
    assert.equal(line.error.reason, "PRICE_NOT_FOUND");
    assert.equal((await totals(client, acct)).count, 2);
  });

  it("spools while the service is down and replays after a reporter restart", async () => {
    const srv = await MeteringServer.start();
    const c = new MeteringClient({ address: srv.address, retry: { initialBackoffMs: 20, maxBackoffMs: 100 } });
    const acct = runPrefix("spool");
    const spoolPath = path.join(dir, "restart.spool");
    try {
      await c.createAccount({ accountId: acct, allowNegativeBalance: true });
      await srv.kill("SIGKILL");
      const r1 = await UsageReporter.open({ client: c, spoolPath, attemptsPerSend: 2 });
      const spooled: number[] = [];
      r1.on("spooled", (n) => spooled.push(n));
      for (let i = 0; i < 30; i++) await r1.report(record(acct, `s-${i}`));
      await r1.flush();
      assert.equal(r1.isHealthy, false);
      assert.equal(r1.stats.spoolPending, 30);
      await r1.close();
      const onDisk = await Spool.open(spoolPath);
      assert.equal(onDisk.pendingCount, 30);
      await onDisk.close();

      await srv.launch();
      const r2 = await UsageReporter.open({ client: c, spoolPath });
      assert.equal(r2.pendingCount, 30);
      assert.equal(await r2.drain(30_000), true);
      await r2.close();
      assert.equal(statSync(spoolPath).size, 0, "spool emptied once everything was taken");
      assert.deepEqual(await totals(c, acct), { count: 30, balanceNanos: BigInt(-30 * COST) });
    } finally {
      c.close();
      await srv.stop();
    }
  });

  for (const durability of ["write-ahead", "on-failure"] as Durability[]) {
    it(`loses nothing when the relay process is killed (${durability})`, async () => {
      const srv = await MeteringServer.start();
      const c = new MeteringClient({ address: srv.address });
      const acct = runPrefix(`kill-${durability}`);
      const spoolPath = path.join(dir, `kill-${durability}.spool`);
      const n = 40;
      try {
        await c.createAccount({ accountId: acct, allowNegativeBalance: true });
        // write-ahead: the service is up but the child holds its records
        // (60 s flush interval); on-failure: the service is down.
        if (durability === "on-failure") await srv.kill("SIGKILL");
        const child = spawn(
          process.execPath,
          ["--import", "tsx", path.join(__dirname, "fixtures", "reporter-child.ts"), srv.address, spoolPath, acct, String(n), durability],
          { stdio: ["ignore", "pipe", "inherit"] },
        );
        const line = await new Promise<string>((resolve, reject) => {
          readline.createInterface({ input: child.stdout! }).once("line", resolve);
          child.once("exit", (code) => reject(new Error(`child exited ${code}`)));
        });
        assert.equal(line, `durable ${n}`);
        child.kill("SIGKILL");
        await new Promise((r) => child.once("exit", r));
        assert.equal((await totals(c, acct).catch(() => ({ count: 0 }))).count, 0);
        if (durability === "on-failure") await srv.launch();

        const r = await UsageReporter.open({ client: c, spoolPath }); // takes over the dead child's lock
        assert.equal(r.pendingCount, n);
        assert.equal(await r.drain(30_000), true);
        await r.close();
        assert.deepEqual(await totals(c, acct), { count: n, balanceNanos: BigInt(-n * COST) });
      } finally {
        c.close();
        await srv.stop();
      }
    });
  }

  it("resends byte-identical records, so a replayed spool entry is a replay", async () => {
    const acct = runPrefix("ident");
    await client.createAccount({ accountId: acct, allowNegativeBalance: true });
    const spoolPath = path.join(dir, "ident.spool");
    const r1 = await UsageReporter.open({ client, spoolPath, durability: "write-ahead", flushIntervalMs: 60_000 });
    for (let i = 0; i < 5; i++) await r1.report(record(acct, `i-${i}`));
    // Copy the spool as it is before sending (as if the process died after
    // the sends but before the acks reached the disk).
    const before = readFileSync(spoolPath);
    await r1.drain();
    await r1.close();
    writeFileSync(spoolPath, before);
    const r2 = await UsageReporter.open({ client, spoolPath });
    let replayed = 0;
    r2.on("recorded", (_q, res) => (replayed += res.replayed ? 1 : 0));
    await r2.drain();
    await r2.close();
    assert.equal(replayed, 5);
    assert.deepEqual(await totals(client, acct), { count: 5, balanceNanos: BigInt(-5 * COST) });
  });

  it("waits for the service without losing records reported meanwhile", async () => {
    const acct = runPrefix("wait");
    await client.createAccount({ accountId: acct, allowNegativeBalance: true });
    const r = await UsageReporter.open({ client, spoolPath: path.join(dir, "wait.spool") });
    server.pause();
    try {
      for (let i = 0; i < 10; i++) await r.report(record(acct, `w-${i}`));
    } finally {
      setTimeout(() => server.resume(), 500);
    }
    assert.equal(await r.drain(30_000), true);
    await r.close();
    await eventually(async () => (await totals(client, acct)).count === 10);
  });
});
