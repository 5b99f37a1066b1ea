import { promises as fsp, constants as fsc } from "node:fs";
import * as path from "node:path";

/**
 * A durable, append-only spool of serialized messages (RecordUsage requests),
 * one JSON line per event:
 *
 *   {"v":1,"spool":"metering-usage"}  header
 *   {"p":7,"m":"<base64 protobuf>"}   put: message number 7
 *   {"a":[5,6,7]}                      ack: 5, 6 and 7 are done
 *
 * A put is acknowledged to the caller only after write + fsync, so it
 * survives a crash of the process (or of the machine). Acks are written
 * without waiting for fsync: losing one only means the message is sent again,
 * which the service answers as a replay (same request_id, same payload).
 * A torn last line (a crash mid-write) is cut off when the spool is opened.
 * When nothing is pending the file is truncated; when most of it is acked
 * garbage it is rewritten (temp file, fsync, rename, directory fsync).
 *
 * One process at a time: a lock file (`<path>.lock`, holding the pid) is
 * taken on open; a lock left by a dead process is taken over.
 */
export class Spool {
  readonly path: string;
  private fh: fsp.FileHandle;
  private readonly pendingMap = new Map<number, Buffer>();
  private nextSeq: number;
  private fileBytes: number;
  private ackedSinceCompaction = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private waiting: { lines: string; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private writing = false;
  private closed = false;
  /** Lines that could not be parsed when the spool was opened (skipped). */
  readonly corruptLines: number;

  private static openPaths = new Set<string>();

  private constructor(p: string, fh: fsp.FileHandle, pending: Map<number, Buffer>, nextSeq: number, size: number, corrupt: number) {
    this.path = p;
    this.fh = fh;
    this.pendingMap = pending;
    this.nextSeq = nextSeq;
    this.fileBytes = size;
    this.corruptLines = corrupt;
  }

  /** Opens (or creates) the spool at file path p, taking its lock. */
  static async open(p: string): Promise<Spool> {
    const abs = path.resolve(p);
    await fsp.mkdir(path.dirname(abs), { recursive: true });
    await acquireLock(abs);
    try {
      let content: Buffer;
      try {
        content = await fsp.readFile(abs);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
        content = Buffer.alloc(0);
      }
      // Cut a torn last line.
      const lastNl = content.lastIndexOf(0x0a);
      const validLen = lastNl + 1;
      const pending = new Map<number, Buffer>();
      let maxSeq = 0;
      let corrupt = 0;
      let acked = 0;
      if (validLen > 0) {
        for (const line of content.subarray(0, validLen).toString("utf8").split("\n")) {
          if (!line) continue;
          let ev: { p?: number; m?: string; a?: number[]; v?: number };
          try {
            ev = JSON.parse(line);
          } catch {
            corrupt++;
            continue;
          }
          if (typeof ev.p === "number" && typeof ev.m === "string") {
            pending.set(ev.p, Buffer.from(ev.m, "base64"));
            maxSeq = Math.max(maxSeq, ev.p);
          } else if (Array.isArray(ev.a)) {
            for (const s of ev.a) if (pending.delete(s)) acked++;
          }
        }
      }
      const fh = await fsp.open(abs, fsc.O_CREAT | fsc.O_WRONLY | fsc.O_APPEND, 0o600);
      const sp = new Spool(abs, fh, pending, maxSeq + 1, validLen, corrupt);
      if (validLen !== content.length) {
        await fh.truncate(validLen);
        await fh.sync();
      }
      if (content.length === 0) await fsyncDir(path.dirname(abs));
      if (pending.size === 0 && validLen > 0) await sp.truncateAll();
      else if (acked > 0 || corrupt > 0) await sp.rewrite();
      Spool.openPaths.add(abs);
      return sp;
    } catch (e) {
      await releaseLock(abs);
      throw e;
    }
  }

  /** Messages put and not yet acked, by sequence number, oldest first. */
  pending(): Map<number, Buffer> {
    return new Map([...this.pendingMap.entries()].sort((a, b) => a[0] - b[0]));
  }

  get pendingCount(): number {
    return this.pendingMap.size;
  }

  /** Whether message seq is still pending. */
  has(seq: number): boolean {
    return this.pendingMap.has(seq);
  }

  /** Appends messages; resolves with their sequence numbers once they are on disk (fsync). */
  async put(messages: Uint8Array[]): Promise<number[]> {
    this.assertOpen();
    if (messages.length === 0) return [];
    const seqs: number[] = [];
    let lines = "";
    for (const m of messages) {
      const seq = this.nextSeq++;
      seqs.push(seq);
      const buf = Buffer.from(m);
      this.pendingMap.set(seq, buf);
      lines += JSON.stringify({ p: seq, m: buf.toString("base64") }) + "\n";
    }
    await new Promise<void>((resolve, reject) => {
      this.waiting.push({ lines, resolve, reject });
      this.kickWriter();
    });
    return seqs;
  }

  /** Marks messages done; when nothing is pending any more the file is emptied. */
  async ack(seqs: number[]): Promise<void> {
    this.assertOpen();
    const done = seqs.filter((s) => this.pendingMap.delete(s));
    if (done.length === 0) return;
    this.ackedSinceCompaction += done.length;
    await new Promise<void>((resolve, reject) => {
      this.waiting.push({ lines: JSON.stringify({ a: done }) + "\n", resolve, reject });
      this.kickWriter();
    });
    if (this.pendingMap.size === 0) {
      await this.exclusive(() => (this.pendingMap.size === 0 ? this.truncateAll() : Promise.resolve()));
    } else if (this.ackedSinceCompaction > 10_000 && this.ackedSinceCompaction > 4 * this.pendingMap.size) {
      await this.exclusive(() => this.rewrite());
    }
  }

  /** Group commit: one write + one fsync for every put waiting meanwhile. */
  private kickWriter(): void {
    if (this.writing) return;
    this.writing = true;
    void this.exclusive(async () => {
      try {
        while (this.waiting.length > 0) {
          const batch = this.waiting;
          this.waiting = [];
          const data = Buffer.from(batch.map((b) => b.lines).join(""), "utf8");
          try {
            await this.fh.write(data);
            await this.fh.sync();
            this.fileBytes += data.length;
            for (const b of batch) b.resolve();
          } catch (e) {
            for (const b of batch) b.reject(e);
          }
        }
      } finally {
        this.writing = false;
      }
    });
  }

  /** Serializes file operations. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async truncateAll(): Promise<void> {
    await this.fh.truncate(0);
    await this.fh.sync();
    this.fileBytes = 0;
    this.ackedSinceCompaction = 0;
  }

  /** Rewrites the file with only the pending messages. */
  private async rewrite(): Promise<void> {
    const tmp = `${this.path}.tmp`;
    const lines = [...this.pending().entries()]
      .map(([seq, m]) => JSON.stringify({ p: seq, m: m.toString("base64") }) + "\n")
      .join("");
    const out = await fsp.open(tmp, "w", 0o600);
    try {
      await out.write(lines);
      await out.sync();
    } finally {
      await out.close();
    }
    await this.fh.close();
    await fsp.rename(tmp, this.path);
    await fsyncDir(path.dirname(this.path));
    this.fh = await fsp.open(this.path, fsc.O_CREAT | fsc.O_WRONLY | fsc.O_APPEND, 0o600);
    this.fileBytes = Buffer.byteLength(lines);
    this.ackedSinceCompaction = 0;
  }

  /** Bytes in the spool file. */
  get sizeBytes(): number {
    return this.fileBytes;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`spool ${this.path} is closed`);
  }

  /** Waits for pending writes, closes the file and releases the lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      const check = () => (this.writing || this.waiting.length ? setTimeout(check, 5) : resolve());
      check();
    });
    await this.exclusive(async () => undefined);
    this.closed = true;
    await this.fh.sync().catch(() => undefined);
    await this.fh.close();
    Spool.openPaths.delete(this.path);
    await releaseLock(this.path);
  }

  /** True when this process holds the spool at p open. */
  static isOpen(p: string): boolean {
    return Spool.openPaths.has(path.resolve(p));
  }
}

export class SpoolLockedError extends Error {
  constructor(p: string, pid: number) {
    super(`spool ${p} is in use by process ${pid}`);
    this.name = "SpoolLockedError";
  }
}

async function acquireLock(abs: string): Promise<void> {
  const lock = `${abs}.lock`;
  if (Spool.isOpen(abs)) throw new SpoolLockedError(abs, process.pid);
  for (let i = 0; i < 3; i++) {
    try {
      const fh = await fsp.open(lock, "wx", 0o600);
      await fh.write(String(process.pid));
      await fh.sync();
      await fh.close();
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let pid = NaN;
      try {
        pid = Number((await fsp.readFile(lock, "utf8")).trim());
      } catch {
        // vanished meanwhile: retry
      }
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new SpoolLockedError(abs, pid);
      }
      // Stale (its process is gone, or it is ours from a spool not closed): take it over.
      await fsp.rm(lock, { force: true });
    }
  }
  throw new Error(`could not lock spool ${abs}`);
}

async function releaseLock(abs: string): Promise<void> {
  await fsp.rm(`${abs}.lock`, { force: true });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, "r");
    await fh.sync();
  } catch {
    // some file systems refuse fsync on directories
  } finally {
    await fh?.close();
  }
}
