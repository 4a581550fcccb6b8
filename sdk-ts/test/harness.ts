/** Test doubles: a virtual clock, an in-memory WebSocket and a frame-level fake server. */
import { encodeFrame, FrameDecoder } from "../src/frame.js";
import { decodeFrame, encodeBody, type BodyOf, type BodyType, type DecodedFrame, type InitOf } from "../src/messages.js";
import type { Clock, TimerHandle } from "../src/clock.js";
import type { WebSocketFactory, WebSocketLike } from "../src/transport.js";
import { FrameType } from "../src/frame.js";

/** Virtual time: timers run only in {@link advance}. */
export class FakeClock implements Clock {
  t = 1_000_000;
  private nextId = 1;
  private readonly timers = new Map<number, { at: number; cb: () => void }>();

  now(): number {
    return this.t;
  }

  setTimeout(cb: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), cb });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as number);
  }

  /** Runs every timer due within `ms`, in time order, then sets the time. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let best: [number, { at: number; cb: () => void }] | undefined;
      for (const entry of this.timers) {
        if (entry[1].at <= end && (best === undefined || entry[1].at < best[1].at)) best = entry;
      }
      if (best === undefined) break;
      this.timers.delete(best[0]);
      this.t = Math.max(this.t, best[1].at);
      best[1].cb();
    }
    this.t = end;
  }
}

/** A WebSocket whose other end is a {@link FakeServer}. */
export class FakeSocket implements WebSocketLike {
  binaryType = "";
  protocol = "pike.v1";
  readyState = 0;
  bufferedAmount = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null = null;
  readonly received: DecodedFrame[] = [];
  private readonly decoder = new FrameDecoder(1 << 20);
  closedByClient = false;

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}

  send(data: Uint8Array): void {
    if (this.readyState !== 1) throw new Error("socket not open");
    for (const raw of this.decoder.push(data)) this.received.push(decodeFrame(raw));
  }

  close(): void {
    this.closedByClient = true;
    this.readyState = 3;
  }
}

/** The server side of every socket the SDK opens. */
export class FakeServer {
  readonly sockets: FakeSocket[] = [];

  readonly factory: WebSocketFactory = (url, protocols) => {
    const socket = new FakeSocket(url, protocols);
    this.sockets.push(socket);
    return socket;
  };

  /** The latest socket. */
  get socket(): FakeSocket {
    const s = this.sockets[this.sockets.length - 1];
    if (s === undefined) throw new Error("no socket opened");
    return s;
  }

  /** Opens the latest socket. */
  open(): void {
    this.socket.readyState = 1;
    this.socket.onopen?.({});
  }

  /** Opens the latest socket and answers its hello. */
  accept(hello: Record<string, unknown> = {}): void {
    this.open();
    this.take(FrameType.CLIENT_HELLO);
    this.send(FrameType.SERVER_HELLO, {
      version: 1,
      connectionToken: `token${this.sockets.length}`,
      heartbeatIntervalMs: 60_000,
      heartbeatTimeoutMs: 20_000,
      serverTimeMs: 5_000_000n,
      reconnect: { minDelayMs: 0, maxDelayMs: 0 },
      maxFrameLength: 1 << 20,
      ...hello,
    } as InitOf<typeof FrameType.SERVER_HELLO>);
  }

  /** Sends one frame to the client as one binary message. */
  send<T extends BodyType>(type: T, body: InitOf<T>, socket: FakeSocket = this.socket): void {
    this.sendBytes(encodeFrame(type, encodeBody(type, body)), socket);
  }

  /** Sends raw bytes as one binary message. */
  sendBytes(bytes: Uint8Array, socket: FakeSocket = this.socket): void {
    const copy = bytes.slice().buffer;
    socket.onmessage?.({ data: copy });
  }

  /** The server drops the connection. */
  drop(socket: FakeSocket = this.socket): void {
    socket.readyState = 3;
    socket.onclose?.({ code: 1006, reason: "" });
  }

  /** Removes and returns the received frames of `type` on the latest socket. */
  take<T extends BodyType>(type: T, socket: FakeSocket = this.socket): BodyOf<T>[] {
    const out: BodyOf<T>[] = [];
    for (let i = 0; i < socket.received.length; ) {
      const f = socket.received[i] as DecodedFrame;
      if (f.type === type) {
        out.push(f.body as BodyOf<T>);
        socket.received.splice(i, 1);
      } else i++;
    }
    return out;
  }

  /** The types of the frames received and not taken. */
  pending(socket: FakeSocket = this.socket): number[] {
    return socket.received.map((f) => f.type);
  }
}

/** Lets pending promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}
