import { test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode } from "../src/codes.js";
import { FrameType } from "../src/frame.js";
import { acceptLogin, rig, types } from "./setup.js";
import { settle } from "./harness.js";

test("idle link pings at the interval; a silent link after a ping is dead; reconnects back off 1 s, 1 s, 2 s", () => {
  const r = rig({}, false);
  r.server.accept({ heartbeatIntervalMs: 5000, heartbeatTimeoutMs: 2000 });
  acceptLogin(r);
  r.clock.advance(4999);
  assert.deepEqual(r.server.take(FrameType.PING), []);
  r.clock.advance(1);
  assert.equal(r.server.take(FrameType.PING).length, 1);
  r.server.send(FrameType.PONG, { nonce: 1n });
  r.clock.advance(2000);
  assert.equal(r.server.sockets.length, 1, "the pong kept the link");
  r.clock.advance(3000);
  assert.equal(r.server.take(FrameType.PING).length, 1, "pings again after another idle interval");
  r.clock.advance(2000);
  assert.ok(r.channelEvents.some((e) => e.type === "disconnected" && e.reason.kind === "heartbeatTimeout"));
  const delays = () => r.channelEvents.flatMap((e) => (e.type === "reconnecting" ? [e.delayMs] : []));
  assert.deepEqual(delays(), [1000]);
  r.clock.advance(1000);
  assert.equal(r.server.sockets.length, 2);
  r.server.drop(); // refused before the hello
  r.clock.advance(1000);
  assert.equal(r.server.sockets.length, 3);
  r.server.drop();
  assert.deepEqual(delays(), [1000, 1000, 2000]);
  r.clock.advance(1999);
  assert.equal(r.server.sockets.length, 3);
  r.clock.advance(1);
  assert.equal(r.server.sockets.length, 4);
  assert.equal(r.client.state, "running", "connectivity loss never stops the client");
});

test("a handshake that does not finish in time is abandoned", () => {
  const r = rig({}, false);
  r.server.open();
  r.clock.advance(10_000);
  assert.ok(r.channelEvents.some((e) => e.type === "disconnected" && e.reason.kind === "transport" && e.reason.message.includes("handshake")));
});

test("GO_AWAY: reconnect within the advised window and log in again", () => {
  const r = rig();
  acceptLogin(r);
  r.server.send(FrameType.GO_AWAY, { code: ErrorCode.GOING_AWAY, message: "draining", reconnect: { minDelayMs: 100, maxDelayMs: 300 } });
  const rec = r.channelEvents.find((e) => e.type === "reconnecting");
  assert.ok(rec?.type === "reconnecting" && rec.delayMs === 200, "uniform in [100, 300] with random 0.5");
  r.clock.advance(200);
  assert.equal(r.server.sockets.length, 2);
  r.server.accept();
  assert.equal(r.server.take(FrameType.LOGIN).length, 1);
});

test("a retryable CLOSE with advice and endpoints: the advised ws endpoint is dialed after the advised delay", () => {
  const r = rig();
  acceptLogin(r);
  r.server.send(FrameType.CLOSE, { code: ErrorCode.OVERLOADED, message: "busy", reconnect: { minDelayMs: 50, maxDelayMs: 50, endpoints: ["10.0.0.2:9301", "ws://gw2:8080/v1/ws"] } });
  r.clock.advance(50);
  assert.equal(r.server.socket.url, "ws://gw2:8080/v1/ws");
});

test("ERROR REPLACED ends the login for good", () => {
  const r = rig();
  const stream = acceptLogin(r);
  r.server.send(FrameType.ERROR, { code: ErrorCode.REPLACED, stream, frameType: FrameType.LOGIN, message: "newer login" });
  const stop = r.events.at(-1);
  assert.ok(stop?.type === "stop" && stop.reason.kind === "refused" && stop.reason.code === ErrorCode.REPLACED);
});

test("credential refresh: the provider is asked a margin before expiry and the fresh credential goes as LOGIN on the same stream", async () => {
  const asked: bigint[] = [];
  const r = rig({ credentialRefreshMarginMs: 60_000, credentialProvider: async (req) => (asked.push(req.expiresAtMs), "jwt2") }, false);
  r.server.accept({ heartbeatIntervalMs: 3_600_000 });
  // The hello's server time is 5,000,000 at local 1,000,000: expiry in 10 minutes on the server's clock.
  const stream = acceptLogin(r, { expiresAtMs: 5_600_000n });
  r.clock.advance(539_999);
  assert.deepEqual(asked, []);
  r.clock.advance(1);
  await settle();
  assert.deepEqual(asked, [5_600_000n]);
  const [refresh] = r.server.take(FrameType.LOGIN);
  assert.equal(refresh?.stream, stream);
  assert.equal(refresh?.credential, "jwt2");
  r.server.send(FrameType.LOGIN_RESULT, { stream, expiresAtMs: 6_200_000n, routeId: "", epoch: 0n });
  assert.deepEqual(types(r.events).slice(-1), ["credentialRefreshed"]);
  assert.equal(r.client.resume.routeId, "r0", "a refresh result's other fields are ignored");
  assert.equal(r.client.resume.epoch, 77n);
  r.server.send(FrameType.LOGIN_RESULT, { stream, code: ErrorCode.FORBIDDEN, message: "x" });
  assert.deepEqual(types(r.events).slice(-1), ["credentialRefreshed"], "an unasked result changes nothing");
});

test("without a provider the client reports credentialExpiring; setCredential refreshes; TOKEN_EXPIRED stops", async () => {
  const r = rig();
  const stream = acceptLogin(r, { expiresAtMs: 5_100_000n });
  r.clock.advance(50_000);
  await settle();
  const expiring = r.events.at(-1);
  assert.ok(expiring?.type === "credentialExpiring" && expiring.expiresAtMs === 5_100_000n);
  r.client.setCredential("jwt3");
  assert.equal(r.server.take(FrameType.LOGIN)[0]?.credential, "jwt3");
  r.server.send(FrameType.LOGIN_RESULT, { stream, code: ErrorCode.AUTH_FAILED, message: "bad" });
  assert.equal(r.events.at(-1)?.type, "credentialRefreshFailed");
  r.server.send(FrameType.ERROR, { code: ErrorCode.TOKEN_EXPIRED, stream, frameType: FrameType.LOGIN });
  const stop = r.events.at(-1);
  assert.ok(stop?.type === "stop" && stop.reason.kind === "refused" && stop.reason.code === ErrorCode.TOKEN_EXPIRED);
});

test("two businesses share one connection on streams 0 and 1; frames are routed by stream", () => {
  const r = rig();
  const other = new (r.client.constructor as typeof import("../src/client.js").PikeClient)(r.channel, { biz: "orders", alias: "u42", credential: "jwt" });
  const got: bigint[] = [];
  other.on((e) => e.type === "receive" && got.push(e.message.seq));
  other.start();
  const logins = r.server.take(FrameType.LOGIN);
  assert.deepEqual(logins.map((l) => [l.stream, l.biz]), [[0, "chat"], [1, "orders"]]);
  r.server.send(FrameType.LOGIN_RESULT, { stream: 0 });
  r.server.send(FrameType.LOGIN_RESULT, { stream: 1 });
  r.server.send(FrameType.DOWNLINK, { stream: 1, seq: 4n });
  assert.deepEqual(got, [4n]);
  assert.equal(r.events.filter((e) => e.type === "receive").length, 0);
  assert.equal(r.server.sockets.length, 1);
  r.client.stop();
  assert.equal(r.channel.state, "connected", "still used by the other business");
  r.server.send(FrameType.LOGIN_RESULT, { stream: 7 });
  assert.deepEqual(r.server.take(FrameType.LOGOUT).map((l) => l.stream), [0, 7], "a logout for the stop and one for an unknown accepted stream");
});
