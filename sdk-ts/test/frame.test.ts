import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeFrame, FrameDecoder, FrameError, FrameType } from "../src/frame.js";
import { decodeFrame, encodeBody } from "../src/messages.js";

test("a heartbeat is two bytes and a frame round-trips", () => {
  assert.deepEqual([...encodeFrame(FrameType.PING, encodeBody(FrameType.PING, {}))], [0x28, 0x00]);
  const body = encodeBody(FrameType.DOWNLINK, { stream: 1, seq: 7n, payload: new Uint8Array(200) });
  const frame = encodeFrame(FrameType.DOWNLINK, body);
  assert.equal(frame[1], (body.length & 0x7f) | 0x80, "two-byte length prefix above 127");
  const [raw] = new FrameDecoder(1 << 20).push(frame);
  assert.ok(raw);
  const decoded = decodeFrame(raw);
  assert.equal(decoded.type, FrameType.DOWNLINK);
  if (decoded.type === FrameType.DOWNLINK) assert.equal(decoded.body.seq, 7n);
});

test("partial reads are buffered and several frames in one message are all returned", () => {
  const a = encodeFrame(FrameType.PONG, encodeBody(FrameType.PONG, { nonce: 3n }));
  const b = encodeFrame(FrameType.DOWNLINK, encodeBody(FrameType.DOWNLINK, { seq: 1n, payload: new Uint8Array(300) }));
  const all = new Uint8Array([...a, ...b]);
  const d = new FrameDecoder(1 << 20);
  assert.equal(d.push(all.subarray(0, 1)).length, 0);
  assert.equal(d.push(all.subarray(1, a.length + 2)).length, 1);
  assert.equal(d.buffered, 2);
  const rest = d.push(all.subarray(a.length + 2));
  assert.equal(rest.length, 1);
  assert.equal(rest[0]?.type, FrameType.DOWNLINK);
  assert.equal(d.buffered, 0);
});

test("bad headers are rejected with the protocol's close codes", () => {
  const code = (bytes: number[], max = 1 << 20): number => {
    try {
      new FrameDecoder(max).push(new Uint8Array(bytes));
    } catch (e) {
      assert.ok(e instanceof FrameError);
      return e.code;
    }
    return -1;
  };
  assert.equal(code([0x68, 0x00]), 5, "reserved bit: MALFORMED_FRAME");
  assert.equal(code([0x05, 0x00]), 4, "undefined control type: UNKNOWN_FRAME_TYPE");
  assert.equal(code([0x00, 0x00]), 4, "type 0");
  assert.equal(code([0xa8, 0x00]), 7, "compressed without negotiation: DECOMPRESSION");
  assert.equal(code([0x28, 0x80, 0x00]), 5, "non-minimal length");
  assert.equal(code([0x28, 0x80, 0x80, 0x80, 0x80, 0x01]), 5, "length prefix above 4 bytes");
  assert.equal(code([0x18, 0x80, 0x08], 1000), 3, "declared length above the limit before the body arrives");
  assert.throws(() => encodeFrame(FrameType.UPLINK, new Uint8Array(2000), 1000), FrameError);
});

test("a body that does not decode is MALFORMED_FRAME", () => {
  const [raw] = new FrameDecoder(100).push(new Uint8Array([0x18, 0x02, 0x08, 0x80]));
  assert.ok(raw);
  assert.throws(() => decodeFrame(raw), (e: unknown) => e instanceof FrameError && e.code === 5);
});
