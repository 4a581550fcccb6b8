/**
 * The Pike frame layout (docs/protocol.md, "Frame layout"): a one-byte
 * header (C = compressed, R = reserved, 6-bit type), an unsigned LEB128 body
 * length of at most 4 bytes, minimally encoded, and the body.
 */

/** Frame type numbers of protocol version 1. */
export const FrameType = {
  CLIENT_HELLO: 0x01,
  SERVER_HELLO: 0x02,
  CLOSE: 0x03,
  LOGIN: 0x10,
  LOGIN_RESULT: 0x11,
  LOGOUT: 0x12,
  TAGS: 0x13,
  TAGS_RESULT: 0x14,
  DOWNLINK: 0x18,
  DOWNLINK_ACK: 0x19,
  UPLINK: 0x1a,
  UPLINK_ACK: 0x1b,
  ROOM_JOIN: 0x20,
  ROOM_JOIN_RESULT: 0x21,
  ROOM_LEAVE: 0x22,
  ROOM_PULL: 0x23,
  ROOM_BATCH: 0x24,
  PING: 0x28,
  PONG: 0x29,
  GO_AWAY: 0x2a,
  ERROR: 0x2b,
} as const;

/** One of the {@link FrameType} numbers. */
export type FrameTypeNumber = (typeof FrameType)[keyof typeof FrameType];

const COMPRESSED_BIT = 0x80;
const RESERVED_BIT = 0x40;
const TYPE_MASK = 0x3f;
const MAX_LENGTH_BYTES = 4;

/** The largest body the length prefix can express (2^28 - 1). */
export const MAX_FRAME_LENGTH = 2 ** 28 - 1;

/** One decoded frame: its type and raw protobuf body. */
export interface RawFrame {
  /** The 6-bit frame type. */
  readonly type: number;
  /** The body bytes (not decompressed: this client offers no compression). */
  readonly body: Uint8Array;
}

/** Why a byte sequence is not a valid frame; `code` is the close code. */
export class FrameError extends Error {
  /** The `pike.tunnel.v1.ErrorCode` number to close with. */
  readonly code: number;

  /** A frame error with close code `code`. */
  constructor(code: number, message: string) {
    super(message);
    this.name = "FrameError";
    this.code = code;
  }
}

/** Close codes used by the decoder (pike.tunnel.v1.ErrorCode numbers). */
const CODE_FRAME_TOO_LARGE = 3;
const CODE_UNKNOWN_FRAME_TYPE = 4;
const CODE_MALFORMED_FRAME = 5;
const CODE_DECOMPRESSION = 7;

const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(FrameType));

/** Encodes one frame; throws a {@link FrameError} above `maxBody`. */
export function encodeFrame(type: number, body: Uint8Array, maxBody: number = MAX_FRAME_LENGTH): Uint8Array {
  if (body.length > maxBody || body.length > MAX_FRAME_LENGTH) {
    throw new FrameError(CODE_FRAME_TOO_LARGE, `frame body of ${body.length} bytes is above the peer's limit of ${maxBody}`);
  }
  const prefix: number[] = [];
  let n = body.length;
  do {
    const byte = n & 0x7f;
    n = Math.floor(n / 128);
    prefix.push(n > 0 ? byte | 0x80 : byte);
  } while (n > 0);
  const out = new Uint8Array(1 + prefix.length + body.length);
  out[0] = type & TYPE_MASK;
  out.set(prefix, 1);
  out.set(body, 1 + prefix.length);
  return out;
}

/**
 * Incremental frame decoder. Feed received bytes with {@link push}; it
 * returns every complete frame and keeps a partial one for the next push.
 * The declared length is checked against `maxBody` before the body is
 * buffered. Errors are thrown as {@link FrameError}.
 */
export class FrameDecoder {
  private buffer: Uint8Array = new Uint8Array(0);
  private readonly maxBody: number;

  /** A decoder accepting bodies up to `maxBody` bytes. */
  constructor(maxBody: number) {
    this.maxBody = maxBody;
  }

  /** Bytes received but not yet part of a complete frame. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** Appends `chunk` and returns the complete frames it finished. */
  push(chunk: Uint8Array): RawFrame[] {
    if (this.buffer.length === 0) {
      this.buffer = chunk;
    } else {
      const joined = new Uint8Array(this.buffer.length + chunk.length);
      joined.set(this.buffer, 0);
      joined.set(chunk, this.buffer.length);
      this.buffer = joined;
    }
    const frames: RawFrame[] = [];
    let pos = 0;
    for (;;) {
      const parsed = this.parse(pos);
      if (parsed === undefined) break;
      frames.push(parsed.frame);
      pos = parsed.next;
    }
    this.buffer = pos === this.buffer.length ? new Uint8Array(0) : this.buffer.slice(pos);
    return frames;
  }

  private parse(start: number): { frame: RawFrame; next: number } | undefined {
    const buf = this.buffer;
    if (start >= buf.length) return undefined;
    const header = buf[start] as number;
    if ((header & RESERVED_BIT) !== 0) {
      throw new FrameError(CODE_MALFORMED_FRAME, `reserved bit set in frame header 0x${header.toString(16)}`);
    }
    if ((header & COMPRESSED_BIT) !== 0) {
      throw new FrameError(CODE_DECOMPRESSION, "compressed frame, but this client negotiated no compression");
    }
    const type = header & TYPE_MASK;
    if (!KNOWN_TYPES.has(type)) {
      throw new FrameError(CODE_UNKNOWN_FRAME_TYPE, `unknown frame type 0x${type.toString(16)}`);
    }
    let length = 0;
    let pos = start + 1;
    for (let i = 0; ; i++) {
      if (i >= MAX_LENGTH_BYTES) {
        throw new FrameError(CODE_MALFORMED_FRAME, "frame length prefix longer than 4 bytes");
      }
      if (pos >= buf.length) return undefined;
      const byte = buf[pos] as number;
      pos++;
      length += (byte & 0x7f) * 2 ** (7 * i);
      if ((byte & 0x80) === 0) {
        if (byte === 0 && i > 0) {
          throw new FrameError(CODE_MALFORMED_FRAME, "frame length prefix not minimally encoded");
        }
        break;
      }
    }
    if (length > this.maxBody) {
      throw new FrameError(CODE_FRAME_TOO_LARGE, `frame body of ${length} bytes is above this client's limit of ${this.maxBody}`);
    }
    if (buf.length - pos < length) return undefined;
    return { frame: { type, body: buf.slice(pos, pos + length) }, next: pos + length };
  }
}
