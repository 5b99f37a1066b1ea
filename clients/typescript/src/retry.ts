import { status as GrpcStatus } from "@grpc/grpc-js";

/** How a failed idempotent call is retried. */
export interface RetryPolicy {
  /** Attempts in all, the first included (1 = no retry). */
  maxAttempts: number;
  /** Backoff before the first retry, in ms. */
  initialBackoffMs: number;
  /** Upper bound of a backoff, in ms. */
  maxBackoffMs: number;
  /** Growth factor of the backoff per attempt. */
  multiplier: number;
  /** Fraction of each backoff that is randomized, in [0, 1]: 0.2 waits 80-100% of it. */
  jitter: number;
  /** Status codes that are retried. */
  retryableCodes: number[];
}

export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 5,
  initialBackoffMs: 100,
  maxBackoffMs: 5_000,
  multiplier: 2,
  jitter: 0.2,
  retryableCodes: [GrpcStatus.UNAVAILABLE, GrpcStatus.DEADLINE_EXCEEDED],
};

/** The backoff after failed attempt number `attempt` (1-based), with jitter. */
export function backoffDelay(p: Pick<RetryPolicy, "initialBackoffMs" | "maxBackoffMs" | "multiplier" | "jitter">, attempt: number): number {
  const base = Math.min(p.maxBackoffMs, p.initialBackoffMs * Math.pow(p.multiplier, Math.max(0, attempt - 1)));
  const jitter = Math.min(1, Math.max(0, p.jitter));
  return Math.round(base * (1 - jitter * Math.random()));
}

/** Sleeps ms milliseconds; resolves early when signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
