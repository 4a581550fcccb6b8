/** Credential refresh timing (docs/protocol.md, "Credential refresh"). */
import type { Clock } from "./clock.js";

/**
 * When to ask for a fresh credential, on `clock`: `margin` before the expiry
 * (`expiresAtMs`, the server's clock, converted with `serverClockOffsetMs`),
 * but at most half the time left, so a short-lived credential is refreshed
 * in time too.
 */
export function refreshAt(expiresAtMs: bigint, serverClockOffsetMs: number, now: number, marginMs: number): number {
  const expiryLocal = Number(expiresAtMs) - serverClockOffsetMs;
  const left = Math.max(0, expiryLocal - now);
  return expiryLocal - Math.min(marginMs, left / 2);
}

/** `promise`'s value, or undefined when it rejects or takes longer than `ms` on `clock`. */
export function withTimeout<T>(promise: Promise<T>, clock: Clock, ms: number): Promise<T | undefined> {
  return new Promise<T | undefined>((resolve) => {
    const handle = clock.setTimeout(() => resolve(undefined), ms);
    promise.then(
      (v) => {
        clock.clearTimeout(handle);
        resolve(v);
      },
      () => {
        clock.clearTimeout(handle);
        resolve(undefined);
      },
    );
  });
}
