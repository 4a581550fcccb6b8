/**
 * The SDK over a real WebSocket: Node's `ws` client (the injectable
 * constructor) against a `ws` server on loopback that speaks Pike frames.
 * Checks what the in-memory fake cannot: Buffer/ArrayBuffer handling, the
 * subprotocol negotiation, and several frames in one binary message.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WebSocket, WebSocketServer } from "ws";
import { PikeChannel } from "../src/channel.js";
import { PikeClient } from "../src/client.js";
import { encodeFrame, FrameDecoder, FrameType } from "../src/frame.js";
import { decodeFrame, encodeBody, type DecodedFrame } from "../src/messages.js";
import { factoryFromConstructor } from "../src/transport.js";

test("over a real ws socket: handshake on pike.v1, login, two frames in one message, ack", async () => {
  const server = new WebSocketServer({ port: 0, host: "127.0.0.1", handleProtocols: (protocols) => (protocols.has("pike.v1") ? "pike.v1" : false) });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const address = server.address();
  assert.ok(typeof address === "object" && address !== null);
  const seen: DecodedFrame[] = [];
  let acked: (seq: bigint) => void = () => {};
  const ack = new Promise<bigint>((resolve) => (acked = resolve));
  server.on("connection", (socket, request) => {
    assert.equal(request.url, "/v1/ws");
    assert.equal(socket.protocol, "pike.v1");
    const decoder = new FrameDecoder(1 << 20);
    const send = (...frames: Uint8Array[]) => socket.send(Buffer.concat(frames.map((f) => Buffer.from(f))), { binary: true });
    socket.on("message", (data: Buffer, isBinary: boolean) => {
      assert.ok(isBinary, "frames travel as binary messages");
      for (const raw of decoder.push(new Uint8Array(data))) {
        const frame = decodeFrame(raw);
        seen.push(frame);
        if (frame.type === FrameType.CLIENT_HELLO) {
          send(encodeFrame(FrameType.SERVER_HELLO, encodeBody(FrameType.SERVER_HELLO, { version: 1, connectionToken: "t1", heartbeatIntervalMs: 60000, heartbeatTimeoutMs: 20000 })));
        } else if (frame.type === FrameType.LOGIN) {
          send(
            encodeFrame(FrameType.LOGIN_RESULT, encodeBody(FrameType.LOGIN_RESULT, { stream: frame.body.stream, routeId: "r0" })),
            encodeFrame(FrameType.DOWNLINK, encodeBody(FrameType.DOWNLINK, { stream: frame.body.stream, seq: 1n, payload: new TextEncoder().encode("hello") })),
            encodeFrame(FrameType.DOWNLINK, encodeBody(FrameType.DOWNLINK, { stream: frame.body.stream, seq: 2n, payload: new TextEncoder().encode("world") })),
          );
        } else if (frame.type === FrameType.DOWNLINK_ACK) {
          acked(frame.body.seq);
        }
      }
    });
  });
  const channel = new PikeChannel({
    url: `ws://127.0.0.1:${address.port}/v1/ws`,
    appId: "shop",
    deviceId: "d1",
    webSocket: factoryFromConstructor(WebSocket),
  });
  const client = new PikeClient(channel, { biz: "chat", alias: "u42", credential: "jwt" });
  const payloads: string[] = [];
  client.on((e) => {
    if (e.type === "receive") payloads.push(new TextDecoder().decode(e.message.payload));
  });
  client.start();
  const timeout = setTimeout(() => acked(-1n), 5000);
  try {
    assert.equal(await ack, 2n);
    assert.deepEqual(payloads, ["hello", "world"]);
    assert.equal(client.state, "running");
    assert.equal(channel.connectionToken, "t1");
    assert.deepEqual(seen.map((f) => f.type).slice(0, 2), [FrameType.CLIENT_HELLO, FrameType.LOGIN]);
  } finally {
    clearTimeout(timeout);
    client.stop();
    for (const socket of server.clients) socket.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
