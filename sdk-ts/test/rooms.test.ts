import { test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode } from "../src/codes.js";
import { FrameType } from "../src/frame.js";
import { acceptLogin, rig } from "./setup.js";

const msg = (offset: bigint) => ({ offset, payload: new Uint8Array([Number(offset)]) });

test("rooms: join from the tail, pull, drop offsets below the current one, pull on, leave", async () => {
  const r = rig();
  const stream = acceptLogin(r);
  const joining = r.client.joinRoom("live:1");
  assert.deepEqual(r.server.take(FrameType.ROOM_JOIN).map((j) => [j.stream, j.room]), [[stream, "live:1"]]);
  r.server.send(FrameType.ROOM_JOIN_RESULT, { stream, room: "live:1", head: 3n, tail: 10n });
  assert.deepEqual(await joining, { ok: true, room: "live:1", head: 3n, tail: 10n });
  const [pull] = r.server.take(FrameType.ROOM_PULL);
  assert.equal(pull?.offset, 10n);
  assert.equal(pull?.waitMs, 30000);
  r.server.send(FrameType.ROOM_BATCH, { stream, room: "live:1", messages: [msg(9n), msg(10n), msg(11n)], nextOffset: 12n, missed: 1n });
  const batch = r.events.find((e) => e.type === "roomMessages");
  assert.ok(batch?.type === "roomMessages");
  assert.deepEqual(batch.messages.map((m) => m.offset), [10n, 11n]);
  assert.equal(batch.missed, 1n);
  assert.deepEqual(r.server.take(FrameType.ROOM_PULL).map((x) => x.offset), [12n], "pulls on from next_offset");
  r.server.send(FrameType.ROOM_BATCH, { stream, room: "live:1", messages: [msg(12n)], nextOffset: 13n, pushed: true });
  assert.deepEqual(r.server.take(FrameType.ROOM_PULL), [], "a pushed batch keeps the held pull");
  assert.equal(r.client.roomOffset("live:1"), 13n);
  r.clock.advance(35_000);
  assert.deepEqual(r.server.take(FrameType.ROOM_PULL).map((x) => x.offset), [13n], "an unanswered pull is sent again after wait + grace");
  r.client.leaveRoom("live:1");
  assert.deepEqual(r.server.take(FrameType.ROOM_LEAVE).map((x) => x.room), ["live:1"]);
  assert.equal(r.client.roomOffset("live:1"), undefined);
});

test("rooms are rejoined after a reconnect and pulled from the kept offset; a refused join is reported", async () => {
  const r = rig();
  const stream = acceptLogin(r);
  const j = r.client.joinRoom("live:2");
  r.server.send(FrameType.ROOM_JOIN_RESULT, { stream, room: "live:2", tail: 5n });
  await j;
  r.server.send(FrameType.ROOM_BATCH, { stream, room: "live:2", messages: [msg(5n)], nextOffset: 6n });
  r.server.drop();
  r.clock.advance(1000);
  r.server.accept();
  acceptLogin(r);
  assert.deepEqual(r.server.take(FrameType.ROOM_JOIN).map((x) => x.room), ["live:2"]);
  r.server.send(FrameType.ROOM_JOIN_RESULT, { stream: 0, room: "live:2", tail: 20n });
  assert.deepEqual(r.server.take(FrameType.ROOM_PULL).map((x) => x.offset), [6n]);
  const refused = r.client.joinRoom("live:3");
  r.server.send(FrameType.ROOM_JOIN_RESULT, { stream: 0, room: "live:3", code: ErrorCode.LIMIT_EXCEEDED, message: "quota" });
  const res = await refused;
  assert.ok(!res.ok && res.code === ErrorCode.LIMIT_EXCEEDED);
});

test("a room join without an answer times out", async () => {
  const r = rig({ roomJoinTimeoutMs: 1000 });
  acceptLogin(r);
  const j = r.client.joinRoom("live:4");
  r.clock.advance(1000);
  const res = await j;
  assert.ok(!res.ok && res.message.includes("timed out"));
});
