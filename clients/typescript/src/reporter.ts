import { EventEmitter } from "node:events";
import { promises as fsp } from "node:fs";
import { status as GrpcStatus } from "@grpc/grpc-js";
import type { MeteringClient } from "./client";
import { MeteringError, codeName, toMeteringError } from "./errors";
import {
  RecordUsageRequest,
  type RecordUsageResponse,
  type DeepPartial,
} from "./gen/metering/v1/metering_service";
import { backoffDelay, sleep } from "./retry";
import { Spool } from "./spool";

/**
 * What the reporter does with a record before sending it.
 * - "on-failure" (default): records wait in memory for their batch and go to
 *   the spool file only when the service cannot be reached (and, while it
 *   cannot, as soon as they are reported). A crash of the relay process
 *   loses at most the records of the current flush interval; a graceful
 *   close() loses nothing.
 * - "write-ahead": every record is in the spool file (fsync, group-committed)
 *   before report() resolves; nothing is lost even if the relay is killed.
 */
export type Durability = "on-failure" | "write-ahead";

export interface UsageReporterOptions {
  client: MeteringClient;
  /**
   * The spool file (append-only, fsync'd). Records that could not be sent are
   * kept there and replayed, also by the next process that opens it.
   * Without it, unsent records stay in memory only.
   */
  spoolPath?: string;
  durability?: Durability;
  /** Records per RecordUsageBatch call, 1-1000 (default 100). */
  maxBatchSize?: number;
  /** Serialized bytes per RecordUsageBatch call (default 3 MiB, below the server's 4 MiB). */
  maxBatchBytes?: number;
  /** How long a record waits for companions before its batch is sent, in ms (default 200). */
  flushIntervalMs?: number;
  /** Per-attempt deadline of a batch call, in ms (default 10 s). */
  timeoutMs?: number;
  /** Attempts of a batch call before its records are spooled (default 3). */
  attemptsPerSend?: number;
  /** Backoff between replay rounds while the service is unreachable: start (default 250 ms) ... */
  replayBackoffMs?: number;
  /** ... and cap (default 30 s). */
  maxReplayBackoffMs?: number;
  /**
   * Where records the service refused for good (INVALID_ARGUMENT,
   * ACCOUNT_NOT_FOUND, PRICE_NOT_FOUND, REQUEST_ID_CONFLICT ...) are appended
   * as JSON lines with their error. Default: `<spoolPath>.rejected.jsonl`
   * when a spool is used.
   */
  rejectedPath?: string;
}

/** Emitted events (UsageReporter is an EventEmitter). */
export interface UsageReporterEvents {
  /** A record was recorded (or replayed) by the service. */
  recorded: [request: RecordUsageRequest, response: RecordUsageResponse];
  /** A record was refused for good; it is in the rejected file. */
  rejected: [request: RecordUsageRequest, error: MeteringError];
  /** Records went to the spool because the service could not be reached. */
  spooled: [count: number, error: MeteringError];
  /** A send failed; the records are kept and retried. */
  retrying: [error: MeteringError];
  error: [error: unknown];
}

interface Entry {
  req: RecordUsageRequest;
  bytes: Buffer;
  /** Spool sequence number once the record is on disk. */
  seq?: number;
  transientFailures: number;
}

export interface ReporterStats {
  reported: number;
  recorded: number;
  replayed: number;
  rejected: number;
  spooled: number;
  batches: number;
  failedSends: number;
  pending: number;
  spoolPending: number;
}

// Per-record errors of a batch that are worth retrying.
const TRANSIENT = new Set<number>([
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.ABORTED,
  GrpcStatus.CANCELLED,
  GrpcStatus.RESOURCE_EXHAUSTED,
  GrpcStatus.INTERNAL,
  GrpcStatus.UNKNOWN,
]);
// INTERNAL / UNKNOWN might be a poison record: give up after this many.
const MAX_UNEXPECTED_FAILURES = 20;

/**
 * Sends stream-end RecordUsage calls in the background, batched into
 * RecordUsageBatch. When the service is unreachable, records are written to a
 * local append-only spool file (fsync) and replayed with backoff until the
 * service takes them, by this process or, after a restart, by the next one
 * that opens the same spool. Every record keeps its request_id and
 * event_time, so a record sent twice (a lost response, a lost ack) is
 * recorded once.
 *
 *   const reporter = await UsageReporter.open({ client, spoolPath: "/var/lib/relay/usage.spool" });
 *   reporter.report(recordUsageFromResponse({ accountId, provider: "openai", response: tail }));
 *   ...
 *   await reporter.close();   // on shutdown: flushes, or spools what it cannot send
 */
export class UsageReporter extends EventEmitter<UsageReporterEvents> {
  private readonly client: MeteringClient;
  private readonly spool?: Spool;
  private readonly opts: Required<Omit<UsageReporterOptions, "client" | "spoolPath" | "rejectedPath">> & {
    rejectedPath?: string;
  };
  private queue: Entry[] = [];
  private inFlight = 0;
  private healthy = true;
  private failures = 0;
  private timer?: NodeJS.Timeout;
  private sending?: Promise<void>;
  private closing = false;
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly abort = new AbortController();
  readonly stats: ReporterStats = {
    reported: 0, recorded: 0, replayed: 0, rejected: 0, spooled: 0, batches: 0, failedSends: 0, pending: 0, spoolPending: 0,
  };

  private constructor(opts: UsageReporterOptions, spool?: Spool) {
    super();
    this.client = opts.client;
    this.spool = spool;
    this.opts = {
      durability: opts.durability ?? "on-failure",
      maxBatchSize: Math.min(1000, Math.max(1, opts.maxBatchSize ?? 100)),
      maxBatchBytes: opts.maxBatchBytes ?? 3 * 1024 * 1024,
      flushIntervalMs: opts.flushIntervalMs ?? 200,
      timeoutMs: opts.timeoutMs ?? 10_000,
      attemptsPerSend: Math.max(1, opts.attemptsPerSend ?? 3),
      replayBackoffMs: opts.replayBackoffMs ?? 250,
      maxReplayBackoffMs: opts.maxReplayBackoffMs ?? 30_000,
      rejectedPath: opts.rejectedPath ?? (opts.spoolPath ? `${opts.spoolPath}.rejected.jsonl` : undefined),
    };
    if (this.opts.durability === "write-ahead" && !spool) {
      throw new TypeError("durability write-ahead needs a spoolPath");
    }
    // Don't crash the relay on an unobserved "error" event.
    this.on("error", () => undefined);
  }

  /**
   * Opens a reporter. With a spoolPath, records left in the spool by an
   * earlier process are loaded and replayed first.
   */
  static async open(opts: UsageReporterOptions): Promise<UsageReporter> {
    const spool = opts.spoolPath ? await Spool.open(opts.spoolPath) : undefined;
    const r = new UsageReporter(opts, spool);
    if (spool) {
      for (const [seq, bytes] of spool.pending()) {
        r.queue.push({ req: RecordUsageRequest.decode(bytes), bytes, seq, transientFailures: 0 });
      }
      if (r.queue.length > 0) r.schedule(0);
    }
    r.updateStats();
    return r;
  }

  /**
   * Queues one record. event_time is set to now when absent, so a later
   * replay is priced at the time of the call and is byte-identical to the
   * first attempt. Resolves once the record is queued (on-failure) or on
   * disk (write-ahead, or while the service is unreachable); the record is
   * sent in the background.
   */
  async report(input: DeepPartial<RecordUsageRequest> | RecordUsageRequest): Promise<void> {
    if (this.closing) throw new Error("UsageReporter is closed");
    const req = RecordUsageRequest.fromPartial(input as DeepPartial<RecordUsageRequest>);
    if (!req.requestId) throw new TypeError("RecordUsage needs a request_id (the idempotency key)");
    if (!req.eventTime) req.eventTime = new Date();
    const bytes = Buffer.from(RecordUsageRequest.encode(req).finish());
    const entry: Entry = { req, bytes, transientFailures: 0 };
    this.stats.reported++;
    let spoolError: unknown;
    if (this.spool && (this.opts.durability === "write-ahead" || !this.healthy)) {
      // On disk before it is queued: nothing can send (and ack) it meanwhile.
      try {
        await this.spoolEntries([entry]);
      } catch (e) {
        spoolError = e;
        this.emit("error", e);
      }
    }
    this.queue.push(entry);
    this.updateStats();
    if (this.healthy) {
      this.schedule(this.queue.length >= this.opts.maxBatchSize ? 0 : this.opts.flushIntervalMs);
    }
    if (spoolError !== undefined && this.opts.durability === "write-ahead") throw spoolError;
  }

  /** Records queued or spooled and not yet taken by the service. */
  get pendingCount(): number {
    return this.queue.length + this.inFlight;
  }

  /** Whether the last send reached the service. */
  get isHealthy(): boolean {
    return this.healthy;
  }

  /**
   * Sends everything queued now. Resolves when every record reported so far
   * has been taken by the service or is safe in the spool (when the service
   * is unreachable): true then; false after timeoutMs, or when the service
   * is unreachable and there is no spool.
   */
  async flush(timeoutMs = 30_000): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    this.schedule(0);
    while (Date.now() < end) {
      if (this.sending) await this.sending;
      if (this.queue.length === 0 && this.inFlight === 0) return true;
      if (!this.healthy) {
        // Durable once spooled; the replay goes on in the background.
        if (!this.spool) return false;
        if (this.queue.every((e) => e.seq !== undefined)) return true;
      }
      if (!this.sending && this.healthy) this.schedule(0);
      await sleep(10);
    }
    return false;
  }

  /**
   * Waits until every record has been taken by the service (replays
   * included), or timeoutMs passes; returns whether all were.
   */
  async drain(timeoutMs = 60_000): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (this.queue.length === 0 && this.inFlight === 0) return true;
      // Send now unless the reporter is backing off from a failure.
      if (!this.sending && (this.healthy || !this.timer)) this.schedule(0);
      await sleep(20);
    }
    return this.queue.length === 0 && this.inFlight === 0;
  }

  /**
   * Stops the reporter: sends what it can within timeoutMs, spools the rest
   * (so the next process replays it), and closes the spool.
   */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    const end = Date.now() + timeoutMs;
    if (this.healthy) {
      this.schedule(0);
      while (Date.now() < end && (this.queue.length > 0 || this.inFlight > 0) && this.healthy) {
        if (this.sending) await Promise.race([this.sending, sleep(Math.max(0, end - Date.now()))]);
        else this.schedule(0);
        await sleep(5);
      }
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort();
    if (this.sending) await this.sending.catch(() => undefined);
    this.closed = true;
    const unspooled = this.queue.filter((e) => e.seq === undefined);
    if (this.spool) {
      if (unspooled.length) await this.spoolEntries(unspooled).catch((e) => this.emit("error", e));
      await this.spool.close();
    } else if (this.queue.length) {
      this.emit("error", new Error(`UsageReporter closed with ${this.queue.length} unsent records and no spool`));
    }
  }

  private schedule(delayMs: number): void {
    if (this.closed || this.abort.signal.aborted) return;
    if (this.timer) {
      if (delayMs > 0) return; // a flush is already planned
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.sending) {
        this.sending = this.sendLoop()
          .catch((e) => {
            this.emit("error", e);
          })
          .finally(() => {
            this.sending = undefined;
          });
      } else {
        // Re-check once the running send finishes.
        void this.sending.then(() => this.schedule(0));
      }
    }, delayMs);
    this.timer.unref?.();
  }

  /** Sends batches until the queue is empty or a send fails. */
  private async sendLoop(): Promise<void> {
    while (this.queue.length > 0 && !this.abort.signal.aborted) {
      const batch = this.takeBatch();
      this.inFlight = batch.length;
      let ok: boolean;
      try {
        ok = await this.sendBatch(batch);
      } finally {
        this.inFlight = 0;
        this.updateStats();
      }
      if (!ok) {
        this.healthy = false;
        this.failures++;
        const delay = backoffDelay(
          { initialBackoffMs: this.opts.replayBackoffMs, maxBackoffMs: this.opts.maxReplayBackoffMs, multiplier: 2, jitter: 0.3 },
          this.failures,
        );
        this.schedule(delay);
        return;
      }
      this.healthy = true;
      this.failures = 0;
    }
  }

  private takeBatch(): Entry[] {
    const batch: Entry[] = [];
    let bytes = 0;
    while (this.queue.length > 0 && batch.length < this.opts.maxBatchSize) {
      const e = this.queue[0]!;
      if (batch.length > 0 && bytes + e.bytes.length + 16 > this.opts.maxBatchBytes) break;
      batch.push(e);
      bytes += e.bytes.length + 16;
      this.queue.shift();
    }
    return batch;
  }

  /**
   * Sends one batch. Returns false when the service could not be reached: the
   * batch's records are then back in the queue and in the spool.
   */
  private async sendBatch(batch: Entry[]): Promise<boolean> {
    let results;
    try {
      this.stats.batches++;
      const res = await this.client.recordUsageBatch(
        { records: batch.map((e) => e.req) },
        {
          timeoutMs: this.opts.timeoutMs,
          retry: { maxAttempts: this.opts.attemptsPerSend, retryableCodes: [...TRANSIENT] },
          signal: this.abort.signal,
        },
      );
      results = res.results;
    } catch (e) {
      const err = toMeteringError(e, "MeteringService/RecordUsageBatch");
      this.stats.failedSends++;
      if (!TRANSIENT.has(err.code) || (err.code === GrpcStatus.RESOURCE_EXHAUSTED && batch.length > 1)) {
        // The batch as a whole was refused (too large, or RecordUsageBatch
        // unimplemented): fall back to one RecordUsage per record.
        return this.sendOneByOne(batch, err);
      }
      await this.requeue(batch, err);
      return false;
    }
    if (results.length !== batch.length) {
      const err = new MeteringError({
        code: GrpcStatus.INTERNAL,
        message: `RecordUsageBatch returned ${results.length} results for ${batch.length} records`,
      });
      await this.requeue(batch, err);
      return false;
    }
    const retry: Entry[] = [];
    const acks: number[] = [];
    let lastErr: MeteringError | undefined;
    for (let i = 0; i < batch.length; i++) {
      const entry = batch[i]!;
      const r = results[i]!;
      if (r.response) {
        this.onRecorded(entry, r.response);
        if (entry.seq !== undefined) acks.push(entry.seq);
      } else {
        const err = MeteringError.fromRecordError(
          r.error ?? { code: GrpcStatus.UNKNOWN, message: "empty result", reason: "", fields: [] },
        );
        if (this.isTransientForRecord(entry, err)) {
          retry.push(entry);
          lastErr = err;
        } else {
          await this.onRejected(entry, err);
          if (entry.seq !== undefined) acks.push(entry.seq);
        }
      }
    }
    if (acks.length && this.spool) await this.spool.ack(acks).catch((e) => this.emit("error", e));
    if (retry.length) {
      await this.requeue(retry, lastErr!);
      return false;
    }
    return true;
  }

  private async sendOneByOne(batch: Entry[], batchErr: MeteringError): Promise<boolean> {
    for (let i = 0; i < batch.length; i++) {
      const entry = batch[i]!;
      try {
        const res = await this.client.recordUsage(entry.req, {
          timeoutMs: this.opts.timeoutMs,
          retry: { maxAttempts: this.opts.attemptsPerSend, retryableCodes: [...TRANSIENT] },
          signal: this.abort.signal,
        });
        this.onRecorded(entry, res);
        if (entry.seq !== undefined && this.spool) await this.spool.ack([entry.seq]);
      } catch (e) {
        const err = toMeteringError(e, "MeteringService/RecordUsage");
        if (this.isTransientForRecord(entry, err)) {
          await this.requeue(batch.slice(i), err);
          return false;
        }
        await this.onRejected(entry, err.reason ? err : batchErr);
        if (entry.seq !== undefined && this.spool) await this.spool.ack([entry.seq]);
      }
    }
    return true;
  }

  private isTransientForRecord(entry: Entry, err: MeteringError): boolean {
    if (!TRANSIENT.has(err.code)) return false;
    if (err.code === GrpcStatus.INTERNAL || err.code === GrpcStatus.UNKNOWN) {
      entry.transientFailures++;
      return entry.transientFailures < MAX_UNEXPECTED_FAILURES;
    }
    return true;
  }

  private onRecorded(entry: Entry, res: RecordUsageResponse): void {
    this.stats.recorded++;
    if (res.replayed) this.stats.replayed++;
    this.emit("recorded", entry.req, res);
  }

  private async onRejected(entry: Entry, err: MeteringError): Promise<void> {
    this.stats.rejected++;
    if (this.opts.rejectedPath) {
      const line = JSON.stringify({
        time: new Date().toISOString(),
        error: { code: codeName(err.code), reason: err.reason, message: err.message, fields: err.fields },
        request: RecordUsageRequest.toJSON(entry.req),
      });
      try {
        const fh = await fsp.open(this.opts.rejectedPath, "a", 0o600);
        try {
          await fh.write(line + "\n");
          await fh.sync();
        } finally {
          await fh.close();
        }
      } catch (e) {
        this.emit("error", e);
      }
    }
    this.emit("rejected", entry.req, err);
  }

  /** Puts records back at the end of the queue, spooling those not yet on disk. */
  private async requeue(entries: Entry[], err: MeteringError): Promise<void> {
    const fresh = entries.filter((e) => e.seq === undefined);
    if (this.spool && fresh.length) {
      try {
        await this.spoolEntries(fresh);
        this.emit("spooled", fresh.length, err);
      } catch (e) {
        this.emit("error", e);
      }
    }
    this.queue.push(...entries);
    this.updateStats();
    this.emit("retrying", err);
  }

  /** Writes entries to the spool (fsync). Callers make sure no one sends them meanwhile. */
  private async spoolEntries(entries: Entry[]): Promise<void> {
    const todo = entries.filter((e) => e.seq === undefined);
    if (!this.spool || todo.length === 0) return;
    const seqs = await this.spool.put(todo.map((e) => e.bytes));
    todo.forEach((e, i) => (e.seq = seqs[i]));
    this.stats.spooled += todo.length;
    this.updateStats();
  }

  private updateStats(): void {
    this.stats.pending = this.queue.length + this.inFlight;
    this.stats.spoolPending = this.spool?.pendingCount ?? 0;
  }
}
