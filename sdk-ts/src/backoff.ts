/**
 * Reconnect delays: the Fibonacci backoff of the Rust SDK (multiples of
 * 1 s: 1, 1, 2, 3, 5, 8, ... capped at 60 s, each with ±50 % jitter) and a
 * uniform pick in a range (the server's reconnect advice).
 */
import type { Random } from "./clock.js";

/** Settings of a {@link FibonacciBackoff}. */
export interface BackoffOptions {
  /** The unit of the sequence, ms (default 1000). */
  baseMs?: number;
  /** The cap, ms (default 60000). */
  maxMs?: number;
  /** Jitter as a fraction of the step: the delay is step × (1 ± jitter) (default 0.5). */
  jitter?: number;
}

/** Fibonacci backoff with jitter. */
export class FibonacciBackoff {
  private previous = 0;
  private current = 1;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly jitter: number;

  /** A backoff drawing its jitter from `random`. */
  constructor(
    private readonly random: Random,
    options: BackoffOptions = {},
  ) {
    this.baseMs = options.baseMs ?? 1000;
    this.maxMs = options.maxMs ?? 60_000;
    this.jitter = Math.min(Math.max(options.jitter ?? 0.5, 0), 1);
  }

  /** The next delay in ms. */
  next(): number {
    const step = Math.min(this.current * this.baseMs, this.maxMs);
    if (this.current * this.baseMs < this.maxMs) {
      const next = this.previous + this.current;
      this.previous = this.current;
      this.current = next;
    }
    const factor = 1 - this.jitter + 2 * this.jitter * this.random();
    return Math.round(step * factor);
  }

  /** Starts the sequence over. */
  reset(): void {
    this.previous = 0;
    this.current = 1;
  }
}

/** A delay picked uniformly in `[minMs, maxMs]`. */
export function uniformDelay(random: Random, minMs: number, maxMs: number): number {
  if (maxMs <= minMs) return minMs;
  return Math.round(minMs + (maxMs - minMs) * random());
}
