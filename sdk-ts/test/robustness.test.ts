import { test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode } from "../src/codes.js";
import { FrameType } from "../src/frame.js";
import { PikeClient } from "../src/client.js";
import { acceptLogin, rig, type Rig } from "./setup.js";

test("a throwing listener neither breaks delivery nor the acknowledgement", () => {
  const r = rig();
  const stream = acceptLogin(r);
  r.client.on(() => {
    throw new Error("app bug");
  });
  r.server.send(FrameType.DOWNLINK, { stream, seq: 1n });
  r.server.send(FrameType.DOWNLINK, { stream, seq: 2n });
  r.clock.advance(20);
  assert.deepEqual(r.server.take(FrameType.DOWNLINK_ACK).map((a) => a.seq), [2n]);
  assert.equal(r.server.sockets.length, 1);
});

test("ERROR NOT_LOGGED_IN for a logged-in stream logs in again on a new stream and resends", () => {
  const r = rig();
  const stream = acceptLogin(r);
  r.client.send(new Uint8Array([1]), "k1");
  r.server.take(FrameType.UPLINK);
  r.server.send(FrameType.ERROR, { code: ErrorCode.NOT_LOGGED_IN, stream, frameType: FrameType.UPLINK, message: "stream is not logged in" });
  const [login] = r.server.take(FrameType.LOGIN);
  assert.equal(login?.stream, stream + 1);
  r.server.send(FrameType.LOGIN_RESULT, { stream: stream + 1 });
  assert.deepEqual(r.server.take(FrameType.UPLINK).map((u) => [u.stream, u.seq, u.idempotencyKey]), [[stream + 1, 1n, "k1"]]);
});

test("a pushed room batch reaches every business of the connection in the room, once each", async () => {
  const r = rig();
  const other = new PikeClient(r.channel, { biz: "orders", alias: "u42", credential: "jwt" });
  const otherRooms: bigint[] = [];
  other.on((e) => e.type === "roomMessages" && otherRooms.push(...e.messages.map((m) => m.offset)));
  other.start();
  r.server.take(FrameType.LOGIN);
  r.server.send(FrameType.LOGIN_RESULT, { stream: 0 });
  r.server.send(FrameType.LOGIN_RESULT, { stream: 1 });
  const a = r.client.joinRoom("live:9");
  const b = other.joinRoom("live:9");
  r.server.send(FrameType.ROOM_JOIN_RESULT, { stream: 0, room: "live:9", tail: 1n });
  r.server.send(FrameType.ROOM_JOIN_RESULT, { stream: 1, room: "live:9", tail: 1n });
  await Promise.all([a, b]);
  r.server.send(FrameType.ROOM_BATCH, { stream: 0, room: "live:9", messages: [{ offset: 1n }], nextOffset: 2n, pushed: true });
  const mine = r.events.filter((e) => e.type === "roomMessages");
  assert.equal(mine.length, 1);
  assert.deepEqual(otherRooms, [1n]);
});

test("a PING from the server is answered; an unasked PONG is ignored", () => {
  const r = rig();
  acceptLogin(r);
  r.server.send(FrameType.PING, { nonce: 5n });
  assert.deepEqual(r.server.take(FrameType.PONG).map((p) => p.nonce), [5n]);
  r.server.send(FrameType.PONG, { nonce: 9n });
  assert.equal(r.server.sockets.length, 1);
});

test("a frame only clients send, arriving from the server, is a protocol error", () => {
  const r = rig();
  acceptLogin(r);
  r.server.send(FrameType.UPLINK, { stream: 0, seq: 1n });
  const lost = r.channelEvents.find((e) => e.type === "disconnected");
  assert.ok(lost?.type === "disconnected" && lost.reason.kind === "protocolError" && lost.reason.code === ErrorCode.PROTOCOL);
});

/** A rig whose stable connection (hello window 2 to 4 s) was just lost. */
function lostAfterStableConnection(): Rig {
  const r = rig({}, false);
  r.server.accept({ reconnect: { minDelayMs: 2000, maxDelayMs: 4000 } });
  acceptLogin(r);
  r.server.send(FrameType.PONG, {});
  r.clock.advance(30_000);
  r.server.send(FrameType.PONG, {});
  r.server.drop();
  return r;
}

test("after a stable connection is lost the hello's reconnect window replaces the backoff", () => {
  const r = lostAfterStableConnection();
  const rec = r.channelEvents.find((e) => e.type === "reconnecting");
  assert.ok(rec?.type === "reconnecting" && rec.delayMs === 3000);
});

test("dials failing after a crash are retried in the hello's window three times, then the backoff", () => {
  const r = lostAfterStableConnection();
  // The gateway is not back: every dial fails before its hello.
  for (let i = 0; i < 5; i++) {
    const delays = r.channelEvents.filter((e) => e.type === "reconnecting");
    const last = delays[delays.length - 1];
    assert.ok(last?.type === "reconnecting");
    r.clock.advance(last.delayMs);
    r.server.drop();
  }
  const delays = r.channelEvents.flatMap((e) => (e.type === "reconnecting" ? [e.delayMs] : []));
  // The crash spread, three retries in the window, then the Fibonacci backoff (1 s, 1 s).
  assert.deepEqual(delays, [3000, 3000, 3000, 3000, 1000, 1000]);
});
