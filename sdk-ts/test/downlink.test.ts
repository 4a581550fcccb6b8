import { test } from "node:test";
import assert from "node:assert/strict";
import { FrameType } from "../src/frame.js";
import { WebStorageStore, type StorageLike } from "../src/storage.js";
import { acceptLogin, rig, types } from "./setup.js";

const p = (n: number) => new Uint8Array([n]);

test("reliable delivery is acked cumulatively after the ack delay; a redelivered seq is dropped and acked again", () => {
  const r = rig();
  const stream = acceptLogin(r);
  r.server.send(FrameType.DOWNLINK, { stream, seq: 1n, payload: p(1) });
  r.server.send(FrameType.DOWNLINK, { stream, seq: 2n, payload: p(2) });
  const received = r.events.filter((e) => e.type === "receive");
  assert.deepEqual(received.map((e) => (e.type === "receive" ? e.message.seq : -1n)), [1n, 2n]);
  assert.deepEqual(r.server.take(FrameType.DOWNLINK_ACK), [], "not before the ack delay");
  r.clock.advance(20);
  assert.deepEqual(r.server.take(FrameType.DOWNLINK_ACK).map((a) => a.seq), [2n]);
  r.server.send(FrameType.DOWNLINK, { stream, seq: 2n, payload: p(2) });
  assert.equal(r.events.filter((e) => e.type === "receive").length, 2, "duplicate not handed over");
  assert.deepEqual(r.server.take(FrameType.DOWNLINK_ACK).map((a) => a.seq), [2n], "acked again at once");
  assert.equal(r.client.resume.position, 2n);
});

test("the ack threshold acks without waiting; a gap is reported and covered", () => {
  const r = rig({ ackThreshold: 2 });
  const stream = acceptLogin(r);
  r.server.send(FrameType.DOWNLINK, { stream, seq: 1n, payload: p(1) });
  r.server.send(FrameType.DOWNLINK, { stream, seq: 4n, payload: p(4) });
  assert.deepEqual(r.server.take(FrameType.DOWNLINK_ACK).map((a) => a.seq), [4n]);
  const gap = r.events.find((e) => e.type === "gap");
  assert.ok(gap?.type === "gap" && gap.expected === 2n && gap.got === 4n);
});

test("transient messages are handed over and never acked", () => {
  const r = rig();
  const stream = acceptLogin(r);
  r.server.send(FrameType.DOWNLINK, { stream, seq: 0n, messageId: 99n, payload: p(7) });
  r.server.send(FrameType.DOWNLINK, { stream, seq: 0n, messageId: 100n, payload: p(8) });
  const got = r.events.filter((e) => e.type === "receive");
  assert.deepEqual(got.map((e) => (e.type === "receive" ? e.message.messageId : 0n)), [99n, 100n]);
  r.clock.advance(1000);
  assert.deepEqual(r.server.take(FrameType.DOWNLINK_ACK), []);
  assert.equal(r.client.resume.position, 0n);
});

test("after a reconnect the login resumes from the acked position, epoch and route id; redeliveries are dropped", () => {
  const r = rig();
  const stream = acceptLogin(r, { routeId: "r3" });
  r.server.send(FrameType.DOWNLINK, { stream, seq: 1n, payload: p(1) });
  r.server.send(FrameType.DOWNLINK, { stream, seq: 2n, payload: p(2) });
  r.server.drop();
  assert.equal(r.client.state, "running");
  const reconnecting = r.channelEvents.find((e) => e.type === "reconnecting");
  assert.ok(reconnecting?.type === "reconnecting" && reconnecting.delayMs === 1000);
  r.clock.advance(1000);
  assert.equal(r.server.sockets.length, 2);
  r.server.accept();
  const [login] = r.server.take(FrameType.LOGIN);
  assert.ok(login);
  assert.equal(login.stream, 0, "a new connection allocates from 0 again");
  assert.equal(login.lastAckedSeq, 2n, "messages handed over are acked on loss");
  assert.equal(login.epoch, 77n);
  assert.equal(login.routeId, "r3");
  r.server.send(FrameType.LOGIN_RESULT, { stream: 0, epoch: 77n });
  r.server.send(FrameType.DOWNLINK, { stream: 0, seq: 2n, payload: p(2) });
  r.server.send(FrameType.DOWNLINK, { stream: 0, seq: 3n, payload: p(3) });
  const seqs = r.events.filter((e) => e.type === "receive").map((e) => (e.type === "receive" ? e.message.seq : 0n));
  assert.deepEqual(seqs, [1n, 2n, 3n], "exactly once, in order");
  assert.deepEqual(types(r.events).filter((t) => t === "running"), ["running"], "running is announced once per start");
});

test("a new log epoch resets the position", () => {
  const r = rig({ sessionStore: { load: () => ({ position: 50n, epoch: 5n, routeId: "" }), save: () => {} } });
  const [login] = r.server.take(FrameType.LOGIN);
  assert.equal(login?.lastAckedSeq, 50n);
  assert.equal(login?.epoch, 5n);
  r.server.send(FrameType.LOGIN_RESULT, { stream: 0, epoch: 6n });
  assert.equal(r.client.resume.position, 0n);
  r.server.send(FrameType.DOWNLINK, { stream: 0, seq: 1n, payload: p(1) });
  assert.equal(r.events.filter((e) => e.type === "receive").length, 1, "seq 1 of the new log is delivered");
});

test("positions persist in Web Storage and a new client resumes from them", () => {
  const data = new Map<string, string>();
  const storage: StorageLike = { getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v) };
  const r = rig({ sessionStore: new WebStorageStore(storage) });
  const stream = acceptLogin(r);
  r.server.send(FrameType.DOWNLINK, { stream, seq: 9n, payload: p(9) });
  r.clock.advance(20);
  assert.deepEqual(JSON.parse(data.get("pike:shop/chat/u42") ?? "{}"), { position: "9", epoch: "77", routeId: "r0" });
  const again = rig({ sessionStore: new WebStorageStore(storage) });
  const [login] = again.server.take(FrameType.LOGIN);
  assert.equal(login?.lastAckedSeq, 9n);
  assert.equal(login?.epoch, 77n);
});
