/**
 * Pike client SDK for browsers and Node ≥ 20: one WebSocket connection per
 * app ({@link PikeChannel}), one {@link PikeClient} per business on it.
 *
 * @packageDocumentation
 */
export { PikeChannel, SDK_NAME, SDK_VERSION, PROTOCOL_VERSIONS, type ChannelOptions, type ChannelState } from "./channel.js";
export { PikeClient, type ClientOptions, type ClientState, type CredentialProvider, type JoinResult, type SendResult, type Sending } from "./client.js";
export type { ChannelEvent, ClientEvent, Delivery, DisconnectReason, RoomDelivery, StopReason } from "./events.js";
export { ErrorCode, codeName, isFinalLoginCode, isRetryableClose, isRetryableUplinkCode } from "./codes.js";
export { FibonacciBackoff, uniformDelay, type BackoffOptions } from "./backoff.js";
export { systemClock, type Clock, type Random, type TimerHandle } from "./clock.js";
export { MemorySessionStore, WebStorageStore, type Session, type SessionStore, type StorageLike } from "./storage.js";
export { SUBPROTOCOL, factoryFromConstructor, type Handler, type WebSocketConstructor, type WebSocketFactory, type WebSocketLike } from "./transport.js";
export { FrameDecoder, FrameError, FrameType, encodeFrame, MAX_FRAME_LENGTH, type RawFrame } from "./frame.js";
export { decodeFrame, encodeBody, type BodyType, type DecodedFrame } from "./messages.js";
