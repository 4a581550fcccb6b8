/**
 * Uplink of one login: messages numbered 1, 2, 3, ... in send order, each
 * with an idempotency key kept on every resend; at most `window` in flight;
 * a bounded queue beyond it; unacked messages resent in order after a
 * reconnect with the same seq and key.
 */

/** One message waiting for its ack. */
export interface PendingSend {
  /** The id returned by `send`. */
  id: number;
  /** Its uplink seq. */
  seq: bigint;
  /** Its idempotency key. */
  key: string;
  /** The payload. */
  payload: Uint8Array;
  /** Transmissions so far. */
  attempts: number;
  /** Sent on the current connection (clock ms), if so. */
  sentAt: number | undefined;
}

/** The send queue of one business client. */
export class UplinkQueue {
  private nextSeq = 1n;
  private readonly queue: PendingSend[] = [];

  /** A queue of at most `limit` messages. */
  constructor(private readonly limit: number) {}

  /** Messages not acked yet. */
  get length(): number {
    return this.queue.length;
  }

  /** Messages sent on the current connection and not acked. */
  get inFlight(): number {
    let n = 0;
    for (const p of this.queue) if (p.sentAt !== undefined) n++;
    return n;
  }

  /** Queues a message; undefined when the queue is full. */
  push(id: number, key: string, payload: Uint8Array): PendingSend | undefined {
    if (this.queue.length >= this.limit) return undefined;
    const pending: PendingSend = { id, seq: this.nextSeq++, key, payload, attempts: 0, sentAt: undefined };
    this.queue.push(pending);
    return pending;
  }

  /** The messages to transmit now under `window`, in order (marked sent at `now`). */
  takeSendable(window: number, now: number): PendingSend[] {
    const out: PendingSend[] = [];
    let inFlight = this.inFlight;
    for (const p of this.queue) {
      if (inFlight >= window) break;
      if (p.sentAt !== undefined) continue;
      p.sentAt = now;
      p.attempts++;
      inFlight++;
      out.push(p);
    }
    return out;
  }

  /** Removes and returns the in-flight message with `seq`. */
  ack(seq: bigint): PendingSend | undefined {
    const index = this.queue.findIndex((p) => p.seq === seq && p.sentAt !== undefined);
    if (index < 0) return undefined;
    return this.queue.splice(index, 1)[0];
  }

  /** The earliest send time of a message in flight. */
  oldestSentAt(): number | undefined {
    let oldest: number | undefined;
    for (const p of this.queue) if (p.sentAt !== undefined && (oldest === undefined || p.sentAt < oldest)) oldest = p.sentAt;
    return oldest;
  }

  /** The connection was lost: everything is unsent again. */
  onLinkLost(): void {
    for (const p of this.queue) p.sentAt = undefined;
  }

  /** Removes messages transmitted `maxAttempts` times and not in flight; returns them. */
  dropExhausted(maxAttempts: number): PendingSend[] {
    const out: PendingSend[] = [];
    for (let i = 0; i < this.queue.length; ) {
      const p = this.queue[i] as PendingSend;
      if (p.sentAt === undefined && p.attempts >= maxAttempts) {
        out.push(p);
        this.queue.splice(i, 1);
      } else i++;
    }
    return out;
  }

  /** Removes every message, in order. */
  drain(): PendingSend[] {
    return this.queue.splice(0, this.queue.length);
  }
}
