// Starts the real metering server as a child process (see
// clients/conformance/README.md, "Starting the server").
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";

export const REPO = path.resolve(__dirname, "..", "..", "..", "..");
export const PRICES_FILE = path.join(REPO, "tests", "data", "prices.json");

export function meteringBin(): string {
  const bin = process.env.METERING_BIN || path.join(REPO, ".venv", "bin", "metering");
  if (!existsSync(bin)) {
    throw new Error(
      `metering server binary not found at ${bin}: run ./scripts/bootstrap (or ./scripts/test) ` +
        `at the repository root, or set METERING_BIN`,
    );
  }
  return bin;
}

/** A free TCP port on 127.0.0.1 (bind :0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of live) {
    try {
      p.kill("SIGKILL");
    } catch {
      // gone
    }
  }
});

export interface ServerOptions {
  /** A fixed port (needed to restart on the same address); default: a free one. */
  port?: number;
  /** The directory holding m.db; default: a fresh temporary directory (deleted on stop). */
  dir?: string;
  env?: Record<string, string>;
}

export class MeteringServer {
  readonly dir: string;
  readonly port: number;
  readonly databaseUrl: string;
  private proc?: ChildProcess;
  private output: string[] = [];
  private readonly ownDir: boolean;
  private readonly env: Record<string, string>;

  private constructor(dir: string, port: number, ownDir: boolean, env: Record<string, string>) {
    this.dir = dir;
    this.port = port;
    this.ownDir = ownDir;
    this.env = env;
    this.databaseUrl = `sqlite:///${path.join(dir, "m.db")}`;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  static async start(opts: ServerOptions = {}): Promise<MeteringServer> {
    const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), "metering-ts-"));
    const port = opts.port ?? (await freePort());
    const s = new MeteringServer(dir, port, opts.dir === undefined, opts.env ?? {});
    await s.launch();
    return s;
  }

  /** Starts the process (again), retrying a few times while the port is still in use. */
  async launch(): Promise<void> {
    let lastErr: unknown;
    for (let i = 0; i < 5; i++) {
      try {
        await this.launchOnce();
        return;
      } catch (e) {
        lastErr = e;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    throw lastErr;
  }

  private launchOnce(): Promise<void> {
    const bin = meteringBin();
    this.output = [];
    const proc = spawn(
      bin,
      ["serve", "--listen", this.address, "--database-url", this.databaseUrl, "--prices-file", PRICES_FILE],
      { env: { ...process.env, ...this.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.proc = proc;
    live.add(proc);
    proc.on("exit", () => live.delete(proc));
    readline.createInterface({ input: proc.stderr! }).on("line", (l) => this.keep(`[stderr] ${l}`));
    const out = readline.createInterface({ input: proc.stdout! });
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.kill("SIGKILL");
        reject(new Error(`metering did not start within 30 s:\n${this.output.join("\n")}`));
      }, 30_000);
      const onExit = (code: number | null, sig: string | null) => {
        clearTimeout(timer);
        reject(new Error(`metering exited (code ${code}, signal ${sig}) before listening:\n${this.output.join("\n")}`));
      };
      proc.once("exit", onExit);
      out.on("line", (l) => {
        this.keep(`[stdout] ${l}`);
        if (l.startsWith(`metering listening on ${this.address}`)) {
          clearTimeout(timer);
          proc.off("exit", onExit);
          resolve();
        }
      });
    });
  }

  private keep(line: string): void {
    this.output.push(line);
    if (this.output.length > 200) this.output.shift();
  }

  /** The last lines the server printed. */
  logs(): string {
    return this.output.join("\n");
  }

  /** Sends a signal and waits for the process to exit. */
  async kill(signal: NodeJS.Signals = "SIGKILL", timeoutMs = 15_000): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    p.kill(signal);
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    await exited;
    clearTimeout(t);
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) the server: calls then hang, as on an overloaded host. */
  pause(): void {
    this.proc?.kill("SIGSTOP");
  }

  resume(): void {
    this.proc?.kill("SIGCONT");
  }

  /** SIGTERM (graceful), SIGKILL after a few seconds; removes its temporary directory. */
  async stop(): Promise<void> {
    this.resume();
    await this.kill("SIGTERM", 5_000);
    if (this.ownDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A prefix unique to a run, e.g. "ts-3fa2c19e0b". */
export function runPrefix(tag = "ts"): string {
  return `${tag}-${Math.random().toString(16).slice(2, 12).padEnd(10, "0")}`;
}

/** Polls fn until it returns a truthy value or timeoutMs passes. */
export async function eventually<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
