import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { InterceptingCall, type Interceptor } from "@grpc/grpc-js";
import {
  AlreadyExistsError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  MeteringClient,
  MeteringError,
  NotFoundError,
  RecordUsageRequest,
  UnavailableError,
  UsageSource,
  decodeStatusDetails,
  isMeteringError,
  status,
  backoffDelay,
} from "../src";
import { BadRequest, ErrorInfo } from "../src/gen-rpc/google/rpc/error_details";
import { Status } from "../src/gen-rpc/google/rpc/status";
import { MeteringServer, freePort, runPrefix } from "./helpers/server";

/** A real grpc-js interceptor that records the request_id of every RecordUsage attempt sent. */
function recordingInterceptor(sent: string[]): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      sendMessage(message: Buffer, next) {
        if (options.method_definition.path.endsWith("/RecordUsage")) {
          sent.push(RecordUsageRequest.decode(message).requestId);
        }
        next(message);
      },
    });
}

const usage = { inputTokens: "1000", outputTokens: "500" };

function nanosOf(m: { units: string; nanos: number } | undefined): number {
  return m ? Number(m.units) * 1e9 + m.nanos : NaN;
}

describe("MeteringClient", () => {
  let server: MeteringServer;
  let client: MeteringClient;
  const acct = runPrefix("cl");

  before(async () => {
    server = await MeteringServer.start();
    client = new MeteringClient({ address: server.address });
    await client.createAccount({ accountId: acct });
    await client.grantCredits({ accountId: acct, requestId: "grant-1", amount: { currencyCode: "USD", units: "10" } });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  it("records usage and replays the same request_id", async () => {
    const req = { accountId: acct, requestId: "r-1", model: "gpt-4o-mini", provider: "openai", usage };
    const first = await client.recordUsage(req);
    assert.deepEqual(first.cost, { currencyCode: "USD", units: "0", nanos: 450000 });
    assert.equal(first.replayed, false);
    assert.equal(first.usageSource, UsageSource.USAGE_SOURCE_REPORTED);
    const again = await client.recordUsage(req);
    assert.equal(again.replayed, true);
    assert.equal(again.recordId, first.recordId);
    const bal = await client.getBalance(acct);
    assert.deepEqual(bal.balance, { currencyCode: "USD", units: "9", nanos: 999550000 });
  });

  it("corrects a call: the balance moves by exactly the difference, and a repeat replays", async () => {
    const first = await client.recordUsage({ accountId: acct, requestId: "fix-1", model: "gpt-4o-mini", provider: "openai", usage });
    const before = nanosOf((await client.getBalance(acct)).balance);
    // 2000 x 0.15 + 1000 x 0.60 USD per million tokens.
    const correction = { accountId: acct, requestId: "fix-1", usage: { inputTokens: "2000", outputTokens: "1000" }, reason: "invoice" };
    const fixed = await client.correctUsage(correction);
    assert.equal(fixed.correctsRecordId, first.recordId);
    assert.equal(fixed.replayed, false);
    assert.ok(fixed.transactionId);
    assert.equal(nanosOf(fixed.cost), 900_000);
    assert.equal(nanosOf(fixed.costDifference), 900_000 - 450_000);
    assert.deepEqual(fixed.usageDifference, {
      inputTokens: "1000", outputTokens: "500", cacheReadTokens: "0", cacheWriteTokens: "0", cacheWrite1hTokens: "0", reasoningTokens: "0",
    });
    const after = nanosOf((await client.getBalance(acct)).balance);
    assert.equal(after, before - 450_000);
    assert.equal(nanosOf(fixed.balance), after);
    const again = await client.correctUsage(correction);
    assert.equal(again.replayed, true);
    assert.equal(again.transactionId, fixed.transactionId);
    assert.equal(nanosOf((await client.getBalance(acct)).balance), after);
    // An exact cost under an explicit correctionId; the id reused with another payload conflicts.
    const exact = await client.correctUsage({ ...correction, cost: { currencyCode: "USD", nanos: 500_000 }, correctionId: "inv-7" });
    assert.equal(nanosOf(exact.costDifference), -400_000);
    assert.equal(nanosOf((await client.getBalance(acct)).balance), after + 400_000);
    await assert.rejects(
      client.correctUsage({ ...correction, cost: { currencyCode: "USD", nanos: 600_000 }, correctionId: "inv-7" }),
      (e: unknown) => e instanceof AlreadyExistsError && e.reason === "REQUEST_ID_CONFLICT" && e.rpc === "MeteringService/CorrectUsage",
    );
    const sum = await client.usageSummary({
      accountId: acct,
      startTime: new Date(Date.now() - 3600_000),
      endTime: new Date(Date.now() + 3600_000),
      usageSources: [UsageSource.USAGE_SOURCE_CORRECTED],
    });
    assert.equal(sum.totals?.requestCount, "1");
    assert.equal(sum.totals?.inputTokens, "2000");
  });

  it("throws NotFoundError RECORD_NOT_FOUND for a correction of an unknown call", async () => {
    await assert.rejects(
      client.correctUsage({ accountId: acct, requestId: "never-recorded", usage }),
      (e: unknown) => e instanceof NotFoundError && e.reason === "RECORD_NOT_FOUND",
    );
  });

  it("records a call without usage as ESTIMATED from its texts", async () => {
    // "tiktoken is great!" is 6 tokens with o200k_base.
    const res = await client.recordUsage({
      accountId: acct, requestId: "est-1", model: "gpt-4o-mini", promptText: "tiktoken is great!", completionText: "tiktoken is great!",
    });
    assert.equal(res.usageSource, UsageSource.USAGE_SOURCE_ESTIMATED);
    assert.equal(res.usage?.inputTokens, "6");
    assert.equal(res.usage?.outputTokens, "6");
    assert.equal(nanosOf(res.cost), 6 * 150 + 6 * 600);
  });

  it("throws NotFoundError with reason ACCOUNT_NOT_FOUND", async () => {
    await assert.rejects(client.getBalance(`${acct}-missing`), (e: unknown) => {
      assert.ok(e instanceof NotFoundError);
      assert.ok(e instanceof MeteringError);
      assert.equal(e.code, status.NOT_FOUND);
      assert.equal(e.codeName, "NOT_FOUND");
      assert.equal(e.reason, "ACCOUNT_NOT_FOUND");
      assert.equal(e.domain, "metering.dev");
      assert.equal(e.rpc, "MeteringService/GetBalance");
      assert.equal(e.retryable, false);
      assert.equal(e.attempts, 1);
      return true;
    });
  });

  it("throws InvalidArgumentError naming every offending field", async () => {
    await assert.rejects(
      client.recordUsage({
        accountId: acct,
        requestId: "",
        model: "gpt-4o-mini",
        usage: { inputTokens: "-5", outputTokens: "1" },
      }),
      (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError);
        assert.equal(e.reason, "INVALID_ARGUMENT");
        assert.deepEqual([...e.fields].sort(), ["request_id", "usage.input_tokens"]);
        for (const v of e.fieldViolations) assert.ok(v.description.length > 0, `description of ${v.field}`);
        return true;
      },
    );
  });

  it("throws AlreadyExistsError REQUEST_ID_CONFLICT and FailedPreconditionError PRICE_NOT_FOUND", async () => {
    await assert.rejects(
      client.recordUsage({ accountId: acct, requestId: "r-1", model: "gpt-4o-mini", usage: { ...usage, outputTokens: "501" } }),
      (e: unknown) => e instanceof AlreadyExistsError && e.reason === "REQUEST_ID_CONFLICT",
    );
    await assert.rejects(
      client.recordUsage({ accountId: acct, requestId: "r-unpriced", model: "no-such-model", usage }),
      (e: unknown) => e instanceof FailedPreconditionError && isMeteringError(e, "PRICE_NOT_FOUND"),
    );
  });

  it("does not retry a non-retryable error", async () => {
    const sent: string[] = [];
    const c = new MeteringClient({ address: server.address, interceptors: [recordingInterceptor(sent)] });
    try {
      await assert.rejects(c.recordUsage({ accountId: `${acct}-missing`, requestId: "x", model: "gpt-4o-mini", usage }), NotFoundError);
      assert.deepEqual(sent, ["x"]);
    } finally {
      c.close();
    }
  });

  it("gives up with UnavailableError after maxAttempts when nothing listens", async () => {
    const port = await freePort();
    const c = new MeteringClient({ address: `127.0.0.1:${port}`, retry: { maxAttempts: 3, initialBackoffMs: 10 } });
    try {
      await assert.rejects(c.getBalance(acct), (e: unknown) => {
        assert.ok(e instanceof UnavailableError);
        assert.equal(e.retryable, true);
        assert.equal(e.attempts, 3);
        return true;
      });
    } finally {
      c.close();
    }
  });

  it("stops at the call's deadline with DeadlineExceededError", async () => {
    server.pause();
    const c = new MeteringClient({ address: server.address });
    try {
      const t0 = Date.now();
      await assert.rejects(
        c.getBalance(acct, { timeoutMs: 150, retry: { maxAttempts: 1 } }),
        (e: unknown) => e instanceof DeadlineExceededError && e.attempts === 1,
      );
      assert.ok(Date.now() - t0 < 2_000);
    } finally {
      server.resume();
      c.close();
    }
  });

  it("decodes google.rpc.Status details (ErrorInfo, BadRequest)", () => {
    const bytes = Status.encode({
      code: 3,
      message: "bad",
      details: [
        {
          typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
          value: Buffer.from(ErrorInfo.encode({ reason: "INVALID_ARGUMENT", domain: "metering.dev", metadata: { k: "v" } }).finish()),
        },
        {
          typeUrl: "type.googleapis.com/google.rpc.BadRequest",
          value: Buffer.from(
            BadRequest.encode({ fieldViolations: [{ field: "a.b", description: "no", reason: "" }] }).finish(),
          ),
        },
        { typeUrl: "type.googleapis.com/google.rpc.Help", value: Buffer.alloc(0) },
      ],
    }).finish();
    const d = decodeStatusDetails(bytes)!;
    assert.equal(d.code, 3);
    assert.equal(d.errorInfo?.reason, "INVALID_ARGUMENT");
    assert.deepEqual(d.errorInfo?.metadata, { k: "v" });
    assert.deepEqual(d.badRequest?.fieldViolations.map((v) => v.field), ["a.b"]);
    assert.deepEqual(d.otherDetailTypes, ["type.googleapis.com/google.rpc.Help"]);
    assert.equal(decodeStatusDetails(Buffer.from([0xff, 0xff, 0xff])), undefined);
  });

  it("backs off exponentially with jitter, capped", () => {
    const p = { initialBackoffMs: 100, maxBackoffMs: 1000, multiplier: 2, jitter: 0.2 };
    for (let i = 0; i < 50; i++) {
      const d1 = backoffDelay(p, 1);
      const d3 = backoffDelay(p, 3);
      const d9 = backoffDelay(p, 9);
      assert.ok(d1 >= 80 && d1 <= 100, `attempt 1: ${d1}`);
      assert.ok(d3 >= 320 && d3 <= 400, `attempt 3: ${d3}`);
      assert.ok(d9 >= 800 && d9 <= 1000, `attempt 9: ${d9}`);
    }
  });
});

describe("MeteringClient retries", () => {
  it("retries UNAVAILABLE across a server restart with the same request_id, recorded once", async () => {
    const server = await MeteringServer.start();
    const acct = runPrefix("retry");
    const sent: string[] = [];
    const client = new MeteringClient({
      address: server.address,
      interceptors: [recordingInterceptor(sent)],
      retry: { maxAttempts: 30, initialBackoffMs: 50, maxBackoffMs: 300 },
    });
    try {
      await client.createAccount({ accountId: acct, allowNegativeBalance: true });
      await server.kill("SIGKILL");
      const pending = client.recordUsage({ accountId: acct, requestId: "chatcmpl-retry-1", model: "gpt-4o-mini", usage });
      await new Promise((r) => setTimeout(r, 600));
      await server.launch();
      const res = await pending;
      assert.equal(res.replayed, false);
      assert.ok(sent.length >= 2, `expected retries, saw ${sent.length} attempt(s)`);
      assert.ok(sent.every((id) => id === "chatcmpl-retry-1"), `request ids sent: ${sent.join(",")}`);
      const bal = await client.getBalance(acct);
      assert.deepEqual(bal.balance, { currencyCode: "USD", units: "0", nanos: -450000 });
    } finally {
      client.close();
      await server.stop();
    }
  });

  it("retries a CorrectUsage across a server restart with the same message, applied once", async () => {
    const server = await MeteringServer.start();
    const acct = runPrefix("fixretry");
    const sent: Buffer[] = [];
    const client = new MeteringClient({
      address: server.address,
      interceptors: [
        (options, nextCall) =>
          new InterceptingCall(nextCall(options), {
            sendMessage(message: Buffer, next) {
              if (options.method_definition.path.endsWith("/CorrectUsage")) sent.push(Buffer.from(message));
              next(message);
            },
          }),
      ],
      retry: { maxAttempts: 30, initialBackoffMs: 50, maxBackoffMs: 300 },
    });
    try {
      await client.createAccount({ accountId: acct, allowNegativeBalance: true });
      await client.recordUsage({ accountId: acct, requestId: "fix-r", model: "gpt-4o-mini", usage });
      await server.kill("SIGKILL");
      // No correctionId: the server derives it from the payload, so the retry is safe.
      const pending = client.correctUsage({ accountId: acct, requestId: "fix-r", usage: { inputTokens: "2000", outputTokens: "1000" } });
      await new Promise((r) => setTimeout(r, 600));
      await server.launch();
      const res = await pending;
      assert.ok(sent.length >= 2, `expected retries, saw ${sent.length} attempt(s)`);
      assert.ok(sent.every((b) => b.equals(sent[0]!)), "every attempt sends the same bytes");
      assert.equal(nanosOf(res.costDifference), 450_000);
      const bal = await client.getBalance(acct);
      assert.deepEqual(bal.balance, { currencyCode: "USD", units: "0", nanos: -900000 });
    } finally {
      client.close();
      await server.stop();
    }
  });

  it("retries DEADLINE_EXCEEDED (a frozen server) with the same request_id, recorded once", async () => {
    const server = await MeteringServer.start();
    const acct = runPrefix("dl");
    const sent: string[] = [];
    const client = new MeteringClient({
      address: server.address,
      interceptors: [recordingInterceptor(sent)],
      retry: { maxAttempts: 20, initialBackoffMs: 50, maxBackoffMs: 200 },
    });
    try {
      await client.createAccount({ accountId: acct, allowNegativeBalance: true });
      server.pause();
      const pending = client.recordUsage(
        { accountId: acct, requestId: "chatcmpl-dl-1", model: "gpt-4o-mini", usage },
        { timeoutMs: 300 },
      );
      await new Promise((r) => setTimeout(r, 1_000));
      server.resume();
      const res = await pending;
      assert.ok(sent.length >= 2, `expected retries, saw ${sent.length} attempt(s)`);
      assert.ok(sent.every((id) => id === "chatcmpl-dl-1"), `request ids sent: ${sent.join(",")}`);
      // The frozen attempts may be processed after the thaw: whichever answers
      // last is a replay; the account is debited once.
      assert.equal(res.cost?.nanos, 450000);
      const bal = await client.getBalance(acct);
      assert.deepEqual(bal.balance, { currencyCode: "USD", units: "0", nanos: -450000 });
      const sum = await client.usageSummary({
        accountId: acct,
        startTime: new Date(Date.now() - 3600_000),
        endTime: new Date(Date.now() + 3600_000),
      });
      assert.equal(sum.totals?.requestCount, "1");
    } finally {
      client.close();
      await server.stop();
    }
  });
});
