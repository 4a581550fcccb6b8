/** A channel and a client on the fake server, logged in. */
import assert from "node:assert/strict";
import { PikeChannel } from "../src/channel.js";
import { PikeClient, type ClientOptions } from "../src/client.js";
import type { ChannelEvent, ClientEvent } from "../src/events.js";
import { ErrorCode } from "../src/codes.js";
import { FrameType } from "../src/frame.js";
import { FakeClock, FakeServer } from "./harness.js";

export interface Rig {
  clock: FakeClock;
  server: FakeServer;
  channel: PikeChannel;
  client: PikeClient;
  events: ClientEvent[];
  channelEvents: ChannelEvent[];
}

/** A started client whose login is pending on an accepted connection (unless `login` is false). */
export function rig(options: Partial<ClientOptions> = {}, login = true): Rig {
  const clock = new FakeClock();
  const server = new FakeServer();
  const channel = new PikeChannel({ url: "ws://gw:8080/v1/ws", appId: "shop", deviceId: "d1", webSocket: server.factory, clock, random: () => 0.5 });
  const client = new PikeClient(channel, { biz: "chat", alias: "u42", credential: "jwt1", ...options });
  const events: ClientEvent[] = [];
  const channelEvents: ChannelEvent[] = [];
  client.on((e) => events.push(e));
  channel.on((e) => channelEvents.push(e));
  client.start();
  if (login) server.accept();
  return { clock, server, channel, client, events, channelEvents };
}

/** Accepts the pending login. */
export function acceptLogin(r: Rig, result: Record<string, unknown> = {}): number {
  const [login] = r.server.take(FrameType.LOGIN);
  assert.ok(login, "a LOGIN was sent");
  r.server.send(FrameType.LOGIN_RESULT, { stream: login.stream, code: ErrorCode.UNSPECIFIED, routeId: "r0", uplinkWindow: 64, epoch: 77n, ...result });
  return login.stream;
}

/** The event types, in order. */
export function types(events: { type: string }[]): string[] {
  return events.map((e) => e.type);
}
