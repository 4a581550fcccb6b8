/**
 * Frame bodies: which protobuf message each frame type carries, and typed
 * encode/decode between {@link RawFrame}s and generated messages.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";
import type { Message } from "@bufbuild/protobuf";
import {
  ClientHelloSchema,
  CloseSchema,
  ServerHelloSchema,
} from "../gen/pike/tunnel/v1/tunnel_pb.js";
import {
  DownlinkAckSchema,
  DownlinkSchema,
  ErrorSchema,
  GoAwaySchema,
  LoginResultSchema,
  LoginSchema,
  LogoutSchema,
  PingSchema,
  PongSchema,
  RoomBatchSchema,
  RoomJoinResultSchema,
  RoomJoinSchema,
  RoomLeaveSchema,
  RoomPullSchema,
  TagsResultSchema,
  TagsSchema,
  UplinkAckSchema,
  UplinkSchema,
} from "../gen/pike/channel/v1/channel_pb.js";
import { FrameError, FrameType, type RawFrame } from "./frame.js";

/** The schema of each frame type's body. */
export const BODY_SCHEMAS = {
  [FrameType.CLIENT_HELLO]: ClientHelloSchema,
  [FrameType.SERVER_HELLO]: ServerHelloSchema,
  [FrameType.CLOSE]: CloseSchema,
  [FrameType.LOGIN]: LoginSchema,
  [FrameType.LOGIN_RESULT]: LoginResultSchema,
  [FrameType.LOGOUT]: LogoutSchema,
  [FrameType.TAGS]: TagsSchema,
  [FrameType.TAGS_RESULT]: TagsResultSchema,
  [FrameType.DOWNLINK]: DownlinkSchema,
  [FrameType.DOWNLINK_ACK]: DownlinkAckSchema,
  [FrameType.UPLINK]: UplinkSchema,
  [FrameType.UPLINK_ACK]: UplinkAckSchema,
  [FrameType.ROOM_JOIN]: RoomJoinSchema,
  [FrameType.ROOM_JOIN_RESULT]: RoomJoinResultSchema,
  [FrameType.ROOM_LEAVE]: RoomLeaveSchema,
  [FrameType.ROOM_PULL]: RoomPullSchema,
  [FrameType.ROOM_BATCH]: RoomBatchSchema,
  [FrameType.PING]: PingSchema,
  [FrameType.PONG]: PongSchema,
  [FrameType.GO_AWAY]: GoAwaySchema,
  [FrameType.ERROR]: ErrorSchema,
} as const;

type Schemas = typeof BODY_SCHEMAS;
/** A frame type number that has a body schema. */
export type BodyType = keyof Schemas;
type MessageOf<S> = S extends GenMessage<infer M> ? M : never;
/** The decoded body of frame type `T`. */
export type BodyOf<T extends BodyType> = MessageOf<Schemas[T]>;
/** The initializer of frame type `T`'s body (plain object, fields optional). */
export type InitOf<T extends BodyType> = Schemas[T] extends GenMessage<infer M extends Message> ? MessageInitShape<GenMessage<M>> : never;

/** A decoded frame: discriminated by `type`. */
export type DecodedFrame = { [T in BodyType]: { type: T; body: BodyOf<T> } }[BodyType];

/** Encodes the body of a frame of type `type` from a plain initializer. */
export function encodeBody<T extends BodyType>(type: T, init: InitOf<T>): Uint8Array {
  const schema = BODY_SCHEMAS[type] as unknown as GenMessage<Message>;
  return toBinary(schema, create(schema, init as MessageInitShape<GenMessage<Message>>));
}

/** Decodes a frame's protobuf body; a body that does not parse is `MALFORMED_FRAME`. */
export function decodeFrame(raw: RawFrame): DecodedFrame {
  const schema = BODY_SCHEMAS[raw.type as BodyType] as unknown as GenMessage<Message> | undefined;
  if (schema === undefined) {
    throw new FrameError(4, `unknown frame type 0x${raw.type.toString(16)}`);
  }
  try {
    return { type: raw.type, body: fromBinary(schema, raw.body) } as DecodedFrame;
  } catch (error) {
    throw new FrameError(5, `frame 0x${raw.type.toString(16)} body does not decode: ${String(error)}`);
  }
}
