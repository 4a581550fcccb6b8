/**
 * {@link PikeChannel}: one long connection per app, shared by the app's
 * business clients (the Rust `ChannelProxy` in shared mode). It dials the
 * WebSocket, does the versioned hello, keeps the link alive with pings,
 * routes frames to the clients by stream, and reconnects with Fibonacci
 * backoff and jitter (or the server's reconnect advice) when the link is
 * lost. Clients log in again by themselves on each new connection.
 */
import { FibonacciBackoff, uniformDelay, type BackoffOptions } from "./backoff.js";
import { systemClock, Timer, type Clock, type Random } from "./clock.js";
import { ErrorCode, isRetryableClose } from "./codes.js";
import { Emitter, type Listener } from "./emitter.js";
import type { ChannelEvent, DisconnectReason } from "./events.js";
import { encodeFrame, FrameDecoder, FrameError, FrameType } from "./frame.js";
import type { Link, Member } from "./link.js";
import { decodeFrame, encodeBody, type BodyType, type DecodedFrame, type InitOf } from "./messages.js";
import { messageBytes, SUBPROTOCOL, type WebSocketFactory, type WebSocketLike } from "./transport.js";
import type { ReconnectAdvice, ServerHello } from "../gen/pike/tunnel/v1/tunnel_pb.js";

/** The SDK's name and version in the hello. */
export const SDK_NAME = "pike-ts";
/** The SDK version in the hello. */
export const SDK_VERSION = "0.1.0";
/** Protocol versions this SDK speaks. */
export const PROTOCOL_VERSIONS = [1];

/** Settings of a {@link PikeChannel}. */
export interface ChannelOptions {
  /** `ws(s)://host:port/v1/ws`, or a list tried in turn on reconnects. */
  url: string | string[];
  /** The app id of the hello. */
  appId: string;
  /** The device id: stable per installation (positions are stored per device). */
  deviceId: string;
  /** Opens WebSockets (browser: `(u, p) => new WebSocket(u, p)`; Node: the same with `ws`). */
  webSocket: WebSocketFactory;
  /** Time source and timers (default: the system clock). */
  clock?: Clock;
  /** Random source in [0, 1) for jitter (default `Math.random`). */
  random?: Random;
  /** Largest frame body accepted (default 1 MiB). */
  maxFrameLength?: number;
  /** Deadline for the WebSocket open plus the hello exchange, ms (default 10 000). */
  handshakeTimeoutMs?: number;
  /** Heartbeat interval until the server hello says otherwise, ms (default 60 000). */
  heartbeatIntervalMs?: number;
  /** Heartbeat timeout until the server hello says otherwise, ms (default 20 000). */
  heartbeatTimeoutMs?: number;
  /** A connection up this long counts as stable: the backoff starts over, ms (default 30 000). */
  stablePeriodMs?: number;
  /** After a stable connection without advice: reconnect within [0, this], ms (default 10 000). */
  reconnectSpreadMs?: number;
  /**
   * After losing a stable connection, this many dials failing in a row are each retried at a
   * delay drawn again in the window the server's hello advised (a restarted gateway is often
   * not listening yet for its first clients), before the Fibonacci backoff (default 3, 0 to 10).
   */
  crashWindowRetries?: number;
  /** The Fibonacci backoff (default 1 s units up to 60 s, ±50 %). */
  backoff?: BackoffOptions;
  /** Bytes the socket may have queued before the link counts as stuck (default 4 MiB). */
  maxBufferedBytes?: number;
}

/** The channel's state. */
export type ChannelState = "idle" | "connecting" | "connected" | "backoff" | "closed";

const DEFAULT_MAX_FRAME = 1 << 20;

/** The WebSocket-open-state constant. */
const WS_OPEN = 1;

/** One connection attempt and, once handshaken, its link. */
class Connection implements Link {
  readonly decoder: FrameDecoder;
  readonly streams = new Map<number, Member>();
  nextStream = 0;
  handshaken = false;
  alive = true;
  serverClockOffsetMs = 0;
  connectedAt = 0;
  lastTx = 0;
  lastRx = 0;
  pingSentAt: number | undefined;
  intervalMs: number;
  timeoutMs: number;
  peerMaxFrame = DEFAULT_MAX_FRAME;
  nonce = 0n;

  get maxFrameLength(): number {
    return this.peerMaxFrame;
  }

  constructor(
    readonly id: number,
    readonly ws: WebSocketLike,
    readonly channel: PikeChannel,
    maxFrame: number,
    intervalMs: number,
    timeoutMs: number,
  ) {
    this.decoder = new FrameDecoder(maxFrame);
    this.intervalMs = intervalMs;
    this.timeoutMs = timeoutMs;
  }

  send<T extends BodyType>(type: T, body: InitOf<T>): boolean {
    if (!this.alive || this.ws.readyState !== WS_OPEN) return false;
    return this.channel.transmit(this, type, body);
  }

  openStream(member: Member): number {
    const stream = this.nextStream++;
    this.streams.set(stream, member);
    return stream;
  }

  closeStream(stream: number): void {
    this.streams.delete(stream);
  }

  fail(reason: string): void {
    if (this.alive) this.channel.loseLink(this, { kind: "transport", message: reason });
  }
}

/**
 * The shared connection of one app. Create one per app and make a
 * {@link PikeClient} per business on it; the channel connects when the
 * first client starts and disconnects when the last one stops.
 */
export class PikeChannel {
  private readonly options: ChannelOptions;
  private readonly clockSource: Clock;
  private readonly random: Random;
  private readonly backoff: FibonacciBackoff;
  private readonly members = new Set<Member>();
  private readonly emitter: Emitter<ChannelEvent>;
  private readonly reconnectTimer: Timer;
  private readonly handshakeTimer: Timer;
  private readonly heartbeatTimer: Timer;
  private conn: Connection | undefined;
  private nextConnId = 1;
  private attempt = 0;
  private urlIndex = 0;
  private adviceOnce: ReconnectAdvice | undefined;
  private helloAdvice: ReconnectAdvice | undefined;
  /** The hello's crash window, kept after a stable loss until a dial connects (see scheduleReconnect). */
  private crashWindow: ReconnectAdvice | undefined;
  private forceStable = false;
  private advisedEndpoints: string[] = [];
  private currentState: ChannelState = "idle";
  private token = "";

  /** A channel with `options`; nothing happens until a client starts. */
  constructor(options: ChannelOptions) {
    this.options = options;
    this.clockSource = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.backoff = new FibonacciBackoff(this.random, options.backoff);
    this.emitter = new Emitter<ChannelEvent>();
    this.reconnectTimer = new Timer(this.clockSource, () => this.dial());
    this.handshakeTimer = new Timer(this.clockSource, () => {
      if (this.conn !== undefined && !this.conn.handshaken) {
        this.loseLink(this.conn, { kind: "transport", message: "handshake timed out" });
      }
    });
    this.heartbeatTimer = new Timer(this.clockSource, () => this.onHeartbeatTimer());
  }

  /** The app id of the hello. */
  get appId(): string {
    return this.options.appId;
  }

  /** The clock the channel runs on. */
  get clock(): Clock {
    return this.clockSource;
  }

  /** The channel's state. */
  get state(): ChannelState {
    return this.currentState;
  }

  /** The server's connection token of the current connection ("" when none). */
  get connectionToken(): string {
    return this.token;
  }

  /** Subscribes to connectivity events; returns an unsubscribe function. */
  on(listener: Listener<ChannelEvent>): () => void {
    return this.emitter.on(listener);
  }

  /** Network-change hint: skips a pending reconnect delay. */
  reconnectNow(): void {
    if (this.currentState === "backoff") {
      this.reconnectTimer.stop();
      this.dial();
    }
  }

  /** @internal Attaches a started client; connects if needed. */
  attach(member: Member): void {
    this.members.add(member);
    if (this.currentState === "idle" || this.currentState === "closed") {
      this.attempt = 0;
      this.crashWindow = undefined;
      this.backoff.reset();
      this.dial();
    } else if (this.conn?.handshaken === true && this.conn.alive) {
      member.onLinkUp(this.conn);
    }
  }

  /** @internal Detaches a stopped client; disconnects when none is left. */
  detach(member: Member): void {
    this.members.delete(member);
    if (this.members.size > 0) return;
    this.reconnectTimer.stop();
    const conn = this.conn;
    if (conn !== undefined) {
      if (conn.handshaken) this.transmit(conn, FrameType.CLOSE, { code: ErrorCode.UNSPECIFIED, message: "client stopped" });
      this.teardown(conn);
      this.emit({ type: "disconnected", reason: { kind: "stopped" } });
    }
    this.currentState = "idle";
  }

  private emit(event: ChannelEvent): void {
    this.emitter.emit(event);
  }

  private nextUrl(): string {
    if (this.advisedEndpoints.length > 0) {
      const url = this.advisedEndpoints.shift() as string;
      return url;
    }
    const urls = Array.isArray(this.options.url) ? this.options.url : [this.options.url];
    const url = urls[this.urlIndex % urls.length] as string;
    this.urlIndex++;
    return url;
  }

  private dial(): void {
    if (this.members.size === 0) {
      this.currentState = "idle";
      return;
    }
    const url = this.nextUrl();
    this.currentState = "connecting";
    this.emit({ type: "connecting", attempt: this.attempt, url });
    let ws: WebSocketLike;
    try {
      ws = this.options.webSocket(url, [SUBPROTOCOL]);
    } catch (error) {
      this.emit({ type: "error", error });
      this.scheduleReconnect(false);
      return;
    }
    const conn = new Connection(
      this.nextConnId++,
      ws,
      this,
      this.options.maxFrameLength ?? DEFAULT_MAX_FRAME,
      this.options.heartbeatIntervalMs ?? 60_000,
      this.options.heartbeatTimeoutMs ?? 20_000,
    );
    this.conn = conn;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.guard(conn, () => this.onOpen(conn));
    ws.onmessage = (event) => this.guard(conn, () => this.onMessage(conn, event.data));
    ws.onerror = () => {
      /* a close event follows */
    };
    ws.onclose = (event) =>
      this.guard(conn, () => {
        if (conn.alive) {
          const detail = event.code === undefined ? "" : ` (code ${event.code}${event.reason ? `: ${event.reason}` : ""})`;
          this.loseLink(conn, { kind: "transport", message: `connection closed${detail}` });
        }
      });
    this.handshakeTimer.setAt(this.clockSource.now() + (this.options.handshakeTimeoutMs ?? 10_000));
  }

  /** Runs a socket callback; nothing the server sends may throw out of it. */
  private guard(conn: Connection, body: () => void): void {
    if (!conn.alive) return;
    try {
      body();
    } catch (error) {
      if (error instanceof FrameError) {
        this.protocolError(conn, error.code as ErrorCode, error.message);
      } else {
        this.emit({ type: "error", error });
        this.protocolError(conn, ErrorCode.INTERNAL, `client error: ${String(error)}`);
      }
    }
  }

  private onOpen(conn: Connection): void {
    if (conn.ws.protocol !== "" && conn.ws.protocol !== SUBPROTOCOL) {
      this.loseLink(conn, { kind: "transport", message: `server chose subprotocol "${conn.ws.protocol}", not ${SUBPROTOCOL}` });
      return;
    }
    this.transmit(conn, FrameType.CLIENT_HELLO, {
      versions: PROTOCOL_VERSIONS,
      appId: this.options.appId,
      deviceId: this.options.deviceId,
      sdkName: SDK_NAME,
      sdkVersion: SDK_VERSION,
      compressions: [],
      maxFrameLength: this.options.maxFrameLength ?? DEFAULT_MAX_FRAME,
    });
  }

  private onMessage(conn: Connection, data: unknown): void {
    const bytes = messageBytes(data);
    if (bytes === undefined) {
      this.protocolError(conn, ErrorCode.MALFORMED_FRAME, "text WebSocket message; Pike frames travel as binary messages");
      return;
    }
    for (const raw of conn.decoder.push(bytes)) {
      if (!conn.alive) return;
      conn.lastRx = this.clockSource.now();
      conn.pingSentAt = undefined;
      this.onFrame(conn, decodeFrame(raw));
    }
  }

  private onFrame(conn: Connection, frame: DecodedFrame): void {
    if (!conn.handshaken) {
      if (frame.type === FrameType.SERVER_HELLO) {
        this.onServerHello(conn, frame.body);
      } else if (frame.type === FrameType.CLOSE) {
        this.onClose(conn, frame.body.code, frame.body.message, frame.body.reconnect);
      } else {
        this.protocolError(conn, ErrorCode.PROTOCOL, `frame 0x${frame.type.toString(16)} before the server hello`);
      }
      return;
    }
    switch (frame.type) {
      case FrameType.CLOSE:
        this.onClose(conn, frame.body.code, frame.body.message, frame.body.reconnect);
        return;
      case FrameType.GO_AWAY:
        this.adviceOnce = meaningful(frame.body.reconnect);
        this.forceStable = true;
        this.loseLink(conn, { kind: "goAway", code: frame.body.code, message: frame.body.message });
        return;
      case FrameType.PING:
        this.transmit(conn, FrameType.PONG, { nonce: frame.body.nonce });
        return;
      case FrameType.PONG:
        return;
      case FrameType.ERROR:
        if (frame.body.stream === undefined) return;
        this.route(conn, frame.body.stream, frame);
        return;
      case FrameType.LOGIN_RESULT: {
        const member = conn.streams.get(frame.body.stream);
        if (member === undefined) {
          if (frame.body.code === ErrorCode.UNSPECIFIED) this.transmit(conn, FrameType.LOGOUT, { stream: frame.body.stream });
          return;
        }
        member.onFrame(frame);
        return;
      }
      case FrameType.ROOM_BATCH:
        if (frame.body.pushed) {
          const seen = new Set<Member>();
          for (const member of conn.streams.values()) {
            if (!seen.has(member) && member.inRoom(frame.body.room)) {
              seen.add(member);
              member.onFrame(frame);
            }
          }
        } else {
          this.route(conn, frame.body.stream, frame);
        }
        return;
      case FrameType.DOWNLINK:
      case FrameType.UPLINK_ACK:
      case FrameType.TAGS_RESULT:
      case FrameType.ROOM_JOIN_RESULT:
        this.route(conn, frame.body.stream, frame);
        return;
      default:
        this.protocolError(conn, ErrorCode.PROTOCOL, `frame 0x${frame.type.toString(16)} is not sent by a server`);
    }
  }

  private route(conn: Connection, stream: number, frame: DecodedFrame): void {
    conn.streams.get(stream)?.onFrame(frame);
  }

  private onServerHello(conn: Connection, hello: ServerHello): void {
    if (!PROTOCOL_VERSIONS.includes(hello.version)) {
      this.protocolError(conn, ErrorCode.UNSUPPORTED_VERSION, `server picked version ${hello.version}, this client offered ${PROTOCOL_VERSIONS.join(",")}`);
      return;
    }
    const now = this.clockSource.now();
    this.handshakeTimer.stop();
    conn.handshaken = true;
    conn.connectedAt = now;
    conn.lastTx = now;
    conn.lastRx = now;
    if (hello.heartbeatIntervalMs > 0) conn.intervalMs = Math.max(1000, hello.heartbeatIntervalMs);
    if (hello.heartbeatTimeoutMs > 0) conn.timeoutMs = Math.max(1000, hello.heartbeatTimeoutMs);
    if (hello.maxFrameLength > 0) conn.peerMaxFrame = hello.maxFrameLength;
    // Without a server time the device's wall clock stands in for the server's.
    conn.serverClockOffsetMs = (hello.serverTimeMs > 0n ? Number(hello.serverTimeMs) : Date.now()) - now;
    this.helloAdvice = hello.reconnect;
    this.crashWindow = undefined;
    this.token = hello.connectionToken;
    this.currentState = "connected";
    this.emit({ type: "connected", connectionToken: hello.connectionToken });
    this.armHeartbeat(conn);
    for (const member of [...this.members]) {
      if (!conn.alive) return;
      member.onLinkUp(conn);
    }
  }

  private onClose(conn: Connection, code: ErrorCode, message: string, advice: ReconnectAdvice | undefined): void {
    if (!isRetryableClose(code)) {
      this.teardown(conn);
      this.currentState = "closed";
      this.emit({ type: "disconnected", reason: { kind: "closedByServer", code, message } });
      this.emit({ type: "refused", code, message });
      for (const member of [...this.members]) member.onRefused(code, message);
      return;
    }
    this.adviceOnce = meaningful(advice);
    this.loseLink(conn, { kind: "closedByServer", code, message });
  }

  private protocolError(conn: Connection, code: ErrorCode, message: string): void {
    if (conn.handshaken && conn.ws.readyState === WS_OPEN) {
      try {
        this.transmit(conn, FrameType.CLOSE, { code, message });
      } catch {
        // The close frame is a courtesy.
      }
    }
    this.loseLink(conn, { kind: "protocolError", code, message });
  }

  /** @internal Encodes and writes one frame on `conn`. */
  transmit<T extends BodyType>(conn: Connection, type: T, body: InitOf<T>): boolean {
    let frame: Uint8Array;
    try {
      frame = encodeFrame(type, encodeBody(type, body), conn.peerMaxFrame);
    } catch (error) {
      // Above the server's limit: refused here instead of sent (callers check sizes first).
      this.emit({ type: "error", error });
      return false;
    }
    try {
      conn.ws.send(frame);
    } catch (error) {
      this.loseLink(conn, { kind: "transport", message: `send failed: ${String(error)}` });
      return false;
    }
    conn.lastTx = this.clockSource.now();
    const limit = this.options.maxBufferedBytes ?? 4 << 20;
    if ((conn.ws.bufferedAmount ?? 0) > limit) {
      this.loseLink(conn, { kind: "transport", message: `socket send buffer above ${limit} bytes` });
      return false;
    }
    return true;
  }

  private armHeartbeat(conn: Connection): void {
    const due = conn.pingSentAt !== undefined ? conn.pingSentAt + conn.timeoutMs : Math.min(conn.lastTx, conn.lastRx) + conn.intervalMs;
    this.heartbeatTimer.setAt(due);
  }

  private onHeartbeatTimer(): void {
    const conn = this.conn;
    if (conn === undefined || !conn.alive || !conn.handshaken) return;
    const now = this.clockSource.now();
    if (conn.pingSentAt !== undefined) {
      if (now >= conn.pingSentAt + conn.timeoutMs) {
        this.loseLink(conn, { kind: "heartbeatTimeout" });
        return;
      }
    } else if (now >= Math.min(conn.lastTx, conn.lastRx) + conn.intervalMs) {
      conn.nonce++;
      this.transmit(conn, FrameType.PING, { nonce: conn.nonce });
      conn.pingSentAt = now;
    }
    if (conn.alive) this.armHeartbeat(conn);
  }

  private teardown(conn: Connection): void {
    conn.alive = false;
    if (this.conn === conn) this.conn = undefined;
    this.handshakeTimer.stop();
    this.heartbeatTimer.stop();
    this.token = "";
    const ws = conn.ws;
    ws.onopen = null;
    ws.onmessage = null;
    ws.onerror = null;
    ws.onclose = null;
    try {
      ws.close(1000);
    } catch {
      // Already closed.
    }
    conn.streams.clear();
  }

  /** @internal The connection is gone: tell the members, then reconnect. */
  loseLink(conn: Connection, reason: DisconnectReason): void {
    if (!conn.alive) return;
    const wasUp = conn.handshaken;
    const stable = wasUp && (this.forceStable || this.clockSource.now() - conn.connectedAt >= (this.options.stablePeriodMs ?? 30_000));
    this.teardown(conn);
    this.emit({ type: "disconnected", reason });
    if (wasUp) for (const member of [...this.members]) member.onLinkDown();
    this.scheduleReconnect(stable, wasUp);
  }

  private scheduleReconnect(stable: boolean, wasUp = false): void {
    if (this.members.size === 0) {
      this.currentState = "idle";
      return;
    }
    this.forceStable = false;
    if (stable) {
      this.backoff.reset();
      this.attempt = 0;
    }
    const helloAdvice = wasUp ? this.helloAdvice : undefined;
    if (wasUp) this.helloAdvice = undefined;
    let delay: number;
    const once = this.adviceOnce;
    this.adviceOnce = undefined;
    // A failed dial after a stable loss: `attempt` counts the dials since the loss (1 was its spread).
    const crashRetries = Math.min(10, Math.max(0, Math.floor(this.options.crashWindowRetries ?? 3)));
    const crashWindow = !wasUp && this.attempt <= crashRetries ? this.crashWindow : undefined;
    if (once !== undefined && once.maxDelayMs > 0) {
      delay = uniformDelay(this.random, once.minDelayMs, once.maxDelayMs);
      this.advisedEndpoints = wsEndpoints(once.endpoints);
    } else if (stable) {
      if (helloAdvice !== undefined && helloAdvice.maxDelayMs > 0) {
        delay = uniformDelay(this.random, helloAdvice.minDelayMs, helloAdvice.maxDelayMs);
        this.crashWindow = helloAdvice;
      } else {
        delay = uniformDelay(this.random, 0, this.options.reconnectSpreadMs ?? 10_000);
      }
      if (once !== undefined) this.advisedEndpoints = wsEndpoints(once.endpoints);
    } else if (crashWindow !== undefined) {
      delay = uniformDelay(this.random, crashWindow.minDelayMs, crashWindow.maxDelayMs);
    } else {
      delay = this.backoff.next();
    }
    this.attempt++;
    this.currentState = "backoff";
    this.emit({ type: "reconnecting", attempt: this.attempt, delayMs: delay });
    this.reconnectTimer.setAt(this.clockSource.now() + delay);
  }
}

/** Advice worth following: a delay window or endpoints. */
function meaningful(advice: ReconnectAdvice | undefined): ReconnectAdvice | undefined {
  if (advice === undefined) return undefined;
  return advice.maxDelayMs > 0 || advice.endpoints.length > 0 ? advice : undefined;
}

/** Advised endpoints usable by this transport: WebSocket URLs only (TCP `host:port` endpoints are for TCP clients). */
function wsEndpoints(endpoints: string[]): string[] {
  return endpoints.filter((e) => e.startsWith("ws://") || e.startsWith("wss://"));
}
