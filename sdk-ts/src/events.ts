/** The events a {@link PikeClient} and a {@link PikeChannel} report. */
import type { ErrorCode } from "./codes.js";

/** A downlink message handed to the business. */
export interface Delivery {
  /** Sequence number in the alias's log (1, 2, 3, ...); 0n for a transient message. */
  seq: bigint;
  /** Gateway message id (transient messages; 0n for reliable ones). */
  messageId: bigint;
  /** Priority (0 = normal). */
  priority: number;
  /** Expiry, unix ms on the server's clock (0n = none). */
  expiresAtMs: bigint;
  /** The payload. */
  payload: Uint8Array;
}

/** A message of a live room. */
export interface RoomDelivery {
  /** Its offset in the room. */
  offset: bigint;
  /** 0 droppable, 1 reliable. */
  roomClass: number;
  /** Priority (higher first). */
  priority: number;
  /** The payload. */
  payload: Uint8Array;
}

/** Why a client stopped. */
export type StopReason =
  | { kind: "stopped" }
  | { kind: "refused"; code: ErrorCode; message: string };

/** Lifecycle and data events of one business client, in order. */
export type ClientEvent =
  | { type: "start" }
  | { type: "running"; routeId: string }
  | { type: "receive"; message: Delivery }
  | { type: "sendSuccess"; id: number; key: string }
  | { type: "sendFailure"; id: number; key: string; code: ErrorCode | undefined; message: string; retryable: boolean }
  | { type: "stop"; reason: StopReason }
  | { type: "gap"; expected: bigint; got: bigint }
  | { type: "roomMessages"; room: string; messages: RoomDelivery[]; missed: bigint }
  | { type: "roomJoinFailed"; room: string; code: ErrorCode; message: string }
  | { type: "credentialExpiring"; expiresAtMs: bigint }
  | { type: "credentialRefreshed"; expiresAtMs: bigint }
  | { type: "credentialRefreshFailed"; code: ErrorCode; message: string };

/** Why a connection was lost. */
export type DisconnectReason =
  | { kind: "closedByServer"; code: ErrorCode; message: string }
  | { kind: "goAway"; code: ErrorCode; message: string }
  | { kind: "heartbeatTimeout" }
  | { kind: "transport"; message: string }
  | { kind: "protocolError"; code: ErrorCode; message: string }
  | { kind: "stopped" };

/** Connectivity events of a channel; they never mean a message was lost. */
export type ChannelEvent =
  | { type: "connecting"; attempt: number; url: string }
  | { type: "connected"; connectionToken: string }
  | { type: "disconnected"; reason: DisconnectReason }
  | { type: "reconnecting"; attempt: number; delayMs: number }
  | { type: "refused"; code: ErrorCode; message: string }
  | { type: "error"; error: unknown };
