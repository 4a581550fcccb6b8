/**
 * Reliable-downlink bookkeeping of one login on one connection
 * (docs/protocol.md, "Reliable downlink", client rules): which seqs are
 * new, duplicates or after a gap, and which cumulative acknowledgement is
 * due. The position itself (the highest seq handed to the application)
 * belongs to the client's session and outlives connections; an
 * acknowledgement never goes above the highest seq received on this
 * connection.
 */

/** What to do with a received seq, given the position. */
export type SeqVerdict =
  /** seq 0: hand over, never acknowledge. */
  | { kind: "transient" }
  /** At or below the position: drop, and acknowledge `ack` again. */
  | { kind: "duplicate"; ack: bigint }
  /** Hand over; `missedFrom` is set when seqs were skipped (a gap from there). */
  | { kind: "deliver"; missedFrom: bigint | undefined };

/** Per-connection acknowledgement state of one login. */
export class DownlinkAcks {
  private highestReceived = 0n;
  private lastAckSent = 0n;
  private pending = 0;

  /** Classifies `seq` against `position` and records it as received. */
  receive(seq: bigint, position: bigint): SeqVerdict {
    if (seq === 0n) return { kind: "transient" };
    if (seq > this.highestReceived) this.highestReceived = seq;
    if (seq <= position) return { kind: "duplicate", ack: this.highestReceived };
    return { kind: "deliver", missedFrom: seq > position + 1n ? position + 1n : undefined };
  }

  /** A message was handed over; returns how many wait for an acknowledgement. */
  handedOver(): number {
    return ++this.pending;
  }

  /** The cumulative acknowledgement due for `position`, or undefined when none is. */
  due(position: bigint): bigint | undefined {
    const seq = position < this.highestReceived ? position : this.highestReceived;
    return seq > this.lastAckSent ? seq : undefined;
  }

  /** An acknowledgement of `seq` was sent. */
  sent(seq: bigint): void {
    if (seq > this.lastAckSent) this.lastAckSent = seq;
    this.pending = 0;
  }
}
