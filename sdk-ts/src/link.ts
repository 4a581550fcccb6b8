/**
 * What a business client sees of its channel's current connection: the
 * internal contract between {@link PikeChannel} and {@link PikeClient}.
 */
import type { BodyType, DecodedFrame, InitOf } from "./messages.js";
import type { ErrorCode } from "./codes.js";

/** One connection after its handshake, as lent to the channel's members. */
export interface Link {
  /** The connection's number within its channel (1, 2, ...). */
  readonly id: number;
  /** Whether the connection still works. */
  readonly alive: boolean;
  /** Sends one frame; returns false when the link is gone (nothing is sent). */
  send<T extends BodyType>(type: T, body: InitOf<T>): boolean;
  /** The largest frame body the server accepts (from its hello). */
  readonly maxFrameLength: number;
  /** Allocates the next stream number of the connection for `member` (never reused). */
  openStream(member: Member): number;
  /** Stops routing frames of `stream` to its member. */
  closeStream(stream: number): void;
  /** Declares the connection dead (closes it; the channel reconnects). */
  fail(reason: string): void;
  /** The server's wall clock minus the channel clock's `now()`, ms (from the hello). */
  readonly serverClockOffsetMs: number;
}

/** A business attached to a channel. */
export interface Member {
  /** The rooms the member has joined (pushed room batches go to every member in the room). */
  inRoom(room: string): boolean;
  /** A connection is up and handshaken: log in on it. */
  onLinkUp(link: Link): void;
  /** The connection was lost; a new one follows unless the channel stops. */
  onLinkDown(): void;
  /** A frame naming one of the member's streams (or a pushed room batch of its room). */
  onFrame(frame: DecodedFrame): void;
  /** The server refused the connection for good (a final close code). */
  onRefused(code: ErrorCode, message: string): void;
}
