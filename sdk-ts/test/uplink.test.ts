import { test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode } from "../src/codes.js";
import { FrameType } from "../src/frame.js";
import { acceptLogin, rig } from "./setup.js";

test("uplink: numbered from 1, the server's window bounds what is in flight, acks settle sends", async () => {
  const r = rig({ keyPrefix: "k" });
  const stream = acceptLogin(r, { uplinkWindow: 2 });
  const a = r.client.send(new Uint8Array([1]));
  const b = r.client.send(new Uint8Array([2]), "my-key");
  const c = r.client.send(new Uint8Array([3]));
  const sent = r.server.take(FrameType.UPLINK);
  assert.deepEqual(sent.map((u) => [u.seq, u.idempotencyKey]), [[1n, "k-1"], [2n, "my-key"]]);
  r.server.send(FrameType.UPLINK_ACK, { stream, seq: 1n, code: ErrorCode.UNSPECIFIED });
  assert.deepEqual(r.server.take(FrameType.UPLINK).map((u) => u.seq), [3n], "the window opened");
  r.server.send(FrameType.UPLINK_ACK, { stream, seq: 2n, code: ErrorCode.BACKEND_UNAVAILABLE, message: "no backend" });
  r.server.send(FrameType.UPLINK_ACK, { stream, seq: 3n, code: ErrorCode.RATE_LIMITED, routeId: "r1" });
  assert.deepEqual(await a.result, { ok: true, id: a.id, key: "k-1" });
  const rb = await b.result;
  assert.ok(!rb.ok && rb.code === ErrorCode.BACKEND_UNAVAILABLE && !rb.retryable);
  const rc = await c.result;
  assert.ok(!rc.ok && rc.retryable);
  assert.deepEqual(r.events.filter((e) => e.type.startsWith("send")).map((e) => e.type), ["sendSuccess", "sendFailure", "sendFailure"]);
  assert.equal(r.client.resume.routeId, "r1", "the uplink ack's route id is kept");
});

test("uplink sent before the login goes once it is accepted; unacked messages are resent after a reconnect with the same seq and key", () => {
  const r = rig();
  r.client.send(new Uint8Array([1]), "a");
  r.client.send(new Uint8Array([2]), "b");
  assert.deepEqual(r.server.take(FrameType.UPLINK), []);
  const stream = acceptLogin(r);
  assert.equal(r.server.take(FrameType.UPLINK).length, 2);
  r.server.send(FrameType.UPLINK_ACK, { stream, seq: 1n });
  r.server.drop();
  r.clock.advance(1000);
  r.server.accept();
  acceptLogin(r);
  assert.deepEqual(r.server.take(FrameType.UPLINK).map((u) => [u.seq, u.idempotencyKey]), [[2n, "b"]]);
});

test("only the first transmission of a generated key says firstAttempt; resends, chosen keys and a fixed prefix do not", () => {
  const r = rig();
  r.client.send(new Uint8Array([1]));
  r.client.send(new Uint8Array([2]), "chosen");
  const stream = acceptLogin(r);
  const first = r.server.take(FrameType.UPLINK);
  assert.deepEqual(first.map((u) => [u.seq, u.firstAttempt]), [[1n, true], [2n, false]]);
  r.server.send(FrameType.UPLINK_ACK, { stream, seq: 2n });
  r.server.drop();
  r.clock.advance(1000);
  r.server.accept();
  acceptLogin(r);
  const resent = r.server.take(FrameType.UPLINK);
  assert.deepEqual(resent.map((u) => [u.seq, u.idempotencyKey, u.firstAttempt]), [[1n, first[0]?.idempotencyKey, false]]);

  // A prefix the application fixed may repeat keys of an earlier process.
  const fixed = rig({ keyPrefix: "k" });
  fixed.client.send(new Uint8Array([1]));
  acceptLogin(fixed);
  assert.deepEqual(fixed.server.take(FrameType.UPLINK).map((u) => u.firstAttempt), [false]);
});

test("an uplink ack that does not come in time declares the link stuck", () => {
  const r = rig({ sendTimeoutMs: 5000 });
  acceptLogin(r);
  r.client.send(new Uint8Array([1]));
  r.clock.advance(5000);
  assert.ok(r.channelEvents.some((e) => e.type === "disconnected" && e.reason.kind === "transport"));
});

test("sends before start fail at once", async () => {
  const r = rig({}, false);
  r.client.stop();
  const res = await r.client.send(new Uint8Array([1])).result;
  assert.equal(res.ok, false);
});

test("a payload above the server's frame limit fails the send instead of throwing", async () => {
  const r = rig({}, false);
  r.server.accept({ maxFrameLength: 1024 });
  acceptLogin(r);
  const res = await r.client.send(new Uint8Array(2000)).result;
  assert.ok(!res.ok && res.code === ErrorCode.FRAME_TOO_LARGE);
  assert.deepEqual(r.server.take(FrameType.UPLINK), []);
  r.client.send(new Uint8Array(500));
  assert.equal(r.server.take(FrameType.UPLINK).length, 1, "a payload within the limit goes");
});
