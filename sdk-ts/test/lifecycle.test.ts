import { test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode } from "../src/codes.js";
import { FrameType } from "../src/frame.js";
import { acceptLogin, rig, types } from "./setup.js";

test("handshake: hello with version 1, app, device, no compression, over pike.v1", () => {
  const r = rig({}, false);
  assert.equal(r.server.socket.url, "ws://gw:8080/v1/ws");
  assert.deepEqual(r.server.socket.protocols, ["pike.v1"]);
  assert.equal(r.server.socket.binaryType, "arraybuffer");
  assert.deepEqual(r.server.pending(), [], "nothing before open");
  r.server.open();
  const [hello] = r.server.take(FrameType.CLIENT_HELLO);
  assert.ok(hello);
  assert.deepEqual(hello.versions, [1]);
  assert.equal(hello.appId, "shop");
  assert.equal(hello.deviceId, "d1");
  assert.deepEqual(hello.compressions, []);
  assert.equal(hello.maxFrameLength, 1 << 20);
  assert.deepEqual(r.server.pending(), [], "no LOGIN before SERVER_HELLO");
  r.server.send(FrameType.SERVER_HELLO, { version: 1, connectionToken: "abc", heartbeatIntervalMs: 60000, heartbeatTimeoutMs: 20000 });
  assert.equal(r.channel.connectionToken, "abc");
  const [login] = r.server.take(FrameType.LOGIN);
  assert.ok(login);
  assert.equal(login.stream, 0);
  assert.equal(login.biz, "chat");
  assert.equal(login.alias, "u42");
  assert.equal(login.credential, "jwt1");
  assert.equal(login.lastAckedSeq, 0n);
});

test("a server hello with a version not offered is refused and the client reconnects", () => {
  const r = rig({}, false);
  r.server.open();
  r.server.send(FrameType.SERVER_HELLO, { version: 2 });
  assert.equal(r.channel.state, "backoff");
  assert.ok(r.channelEvents.some((e) => e.type === "disconnected" && e.reason.kind === "protocolError" && e.reason.code === ErrorCode.UNSUPPORTED_VERSION));
});

test("login ok: start, running with the route id", () => {
  const r = rig();
  acceptLogin(r);
  assert.deepEqual(types(r.events), ["start", "running"]);
  assert.equal(r.client.state, "running");
  const running = r.events[1];
  assert.ok(running?.type === "running" && running.routeId === "r0");
  assert.equal(r.client.resume.epoch, 77n);
});

test("login refused with a final code stops the client and does not retry", () => {
  const r = rig();
  acceptLogin(r, { code: ErrorCode.AUTH_FAILED, message: "bad signature" });
  assert.deepEqual(types(r.events), ["start", "stop"]);
  const stop = r.events[1];
  assert.ok(stop?.type === "stop" && stop.reason.kind === "refused" && stop.reason.code === ErrorCode.AUTH_FAILED);
  assert.equal(r.client.state, "stopped");
  assert.equal(r.channel.state, "idle", "the last client left: the channel closes");
  assert.ok(r.server.socket.closedByClient);
  r.clock.advance(120_000);
  assert.equal(r.server.sockets.length, 1, "no reconnect");
});

test("login refused with a retryable code is retried on a new stream after the delay", () => {
  const r = rig();
  acceptLogin(r, { code: ErrorCode.INTERNAL, message: "auth webhook down" });
  assert.equal(r.client.state, "starting");
  r.clock.advance(4_999);
  assert.deepEqual(r.server.take(FrameType.LOGIN), []);
  r.clock.advance(1);
  const [again] = r.server.take(FrameType.LOGIN);
  assert.ok(again);
  assert.equal(again.stream, 1, "streams are never reused on a connection");
  r.server.send(FrameType.LOGIN_RESULT, { stream: 1, code: ErrorCode.UNSPECIFIED });
  assert.equal(r.client.state, "running");
});

test("a final CLOSE (UNKNOWN_APP) stops every client without reconnecting", () => {
  const r = rig({}, false);
  r.server.open();
  r.server.send(FrameType.CLOSE, { code: ErrorCode.UNKNOWN_APP, message: "no such app" });
  const stop = r.events.at(-1);
  assert.ok(stop?.type === "stop" && stop.reason.kind === "refused" && stop.reason.code === ErrorCode.UNKNOWN_APP);
  r.clock.advance(600_000);
  assert.equal(r.server.sockets.length, 1);
});

test("stop logs out and fails pending sends", async () => {
  const r = rig();
  const stream = acceptLogin(r, { uplinkWindow: 1 });
  r.client.send(new Uint8Array([1]));
  const second = r.client.send(new Uint8Array([2]));
  r.client.stop();
  const [logout] = r.server.take(FrameType.LOGOUT);
  assert.equal(logout?.stream, stream);
  const result = await second.result;
  assert.equal(result.ok, false);
  assert.equal(r.events.at(-1)?.type, "stop");
  assert.deepEqual(r.server.take(FrameType.CLOSE).map((c) => c.code), [ErrorCode.UNSPECIFIED]);
});

test("garbage from the server closes the connection with an error and reconnects; nothing throws", () => {
  const r = rig();
  acceptLogin(r);
  const first = r.server.socket;
  r.server.sendBytes(new Uint8Array([0x7f, 0x00]));
  assert.deepEqual(r.server.take(FrameType.CLOSE, first).map((c) => c.code), [ErrorCode.MALFORMED_FRAME]);
  assert.ok(first.closedByClient);
  r.server.socket.onmessage?.({ data: "text" });
  r.clock.advance(1000);
  assert.equal(r.server.sockets.length, 2, "reconnected after the backoff");
  assert.equal(r.client.state, "running", "a connection error is not a stop");
});

test("a stopped client starts again on a new connection and resumes its position", () => {
  const r = rig();
  const stream = acceptLogin(r);
  r.server.send(FrameType.DOWNLINK, { stream, seq: 3n });
  r.client.stop();
  assert.deepEqual(r.server.take(FrameType.DOWNLINK_ACK).map((a) => a.seq), [3n], "acked before the logout");
  r.client.start();
  assert.equal(r.server.sockets.length, 2);
  r.server.accept();
  const [login] = r.server.take(FrameType.LOGIN);
  assert.equal(login?.lastAckedSeq, 3n);
  assert.deepEqual(types(r.events), ["start", "running", "gap", "receive", "stop", "start"]);
});
