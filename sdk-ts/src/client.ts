/**
 * {@link PikeClient}: one business's view of Pike, with the lifecycle of the
 * Rust `PikeClient`: `start()` → `start` event → login → `running` (or
 * `stop` when the login is refused for good); `receive` for each downlink
 * message; `send()` → `sendSuccess` | `sendFailure`; `stop()` → `stop`.
 * The client logs in again on every new connection of its channel, with its
 * acked position, epoch and route id, so reliable messages arrive exactly
 * once and in order across reconnects.
 */
import type { PikeChannel } from "./channel.js";
import { systemClock, Timer, type Clock } from "./clock.js";
import { ErrorCode, isFinalLoginCode, isRetryableUplinkCode } from "./codes.js";
import { refreshAt, withTimeout } from "./credential.js";
import { DownlinkAcks } from "./downlink.js";
import { Emitter, type Listener } from "./emitter.js";
import type { ClientEvent, Delivery, StopReason } from "./events.js";
import { FrameType } from "./frame.js";
import type { Link, Member } from "./link.js";
import type { DecodedFrame } from "./messages.js";
import { applyBatch, Rooms } from "./rooms.js";
import { MemorySessionStore, type Session, type SessionStore } from "./storage.js";
import { UplinkQueue, type PendingSend } from "./uplink.js";
import type { Downlink, LoginResult, RoomBatch, RoomJoinResult, UplinkAck } from "../gen/pike/channel/v1/channel_pb.js";
import type { Error as ErrorFrame } from "../gen/pike/channel/v1/channel_pb.js";

/** Bytes of an UPLINK body besides payload and key (field tags, lengths, stream, seq). */
const UPLINK_OVERHEAD = 32;

/** Supplies a fresh credential before the current one expires. */
export type CredentialProvider = (request: { biz: string; alias: string; expiresAtMs: bigint }) => Promise<string | undefined>;

/** Settings of one business client. */
export interface ClientOptions {
  /** The business (no `:`). */
  biz: string;
  /** The alias (no `:`). */
  alias: string;
  /** The signed credential (JWT) for (app, biz, alias). */
  credential: string;
  /** Resume state store (default: in memory). Use `WebStorageStore(localStorage)` to survive reloads. */
  sessionStore?: SessionStore;
  /** A login that only sends (receives no downlink). */
  sendOnly?: boolean;
  /** Uplink messages in flight, narrowed to the server's window (default 16). */
  sendWindow?: number;
  /** Uplink messages queued in all (default 1024). */
  maxQueuedSends?: number;
  /** Transmissions of one uplink message before it fails (default 5). */
  maxSendAttempts?: number;
  /** An uplink ack not here after this many ms means the link is stuck: reconnect (default 30 000). */
  sendTimeoutMs?: number;
  /** Acknowledge after this many messages (default 32). */
  ackThreshold?: number;
  /** ... or after this delay, ms (default 20). */
  ackDelayMs?: number;
  /** A login result not here after this many ms means the link is stuck (default 30 000). */
  loginTimeoutMs?: number;
  /** Delay before retrying a login refused with a retryable code, ms (default 5 000). */
  loginRetryDelayMs?: number;
  /** Ask for a fresh credential this long before expiry (at most half the time left), ms (default 60 000). */
  credentialRefreshMarginMs?: number;
  /** Asked for fresh credentials; without it the client emits `credentialExpiring`. */
  credentialProvider?: CredentialProvider;
  /** How long the provider may take, ms (default 10 000). */
  credentialProviderTimeoutMs?: number;
  /** Long-poll wait of room pulls, ms (default 30 000). */
  roomPullWaitMs?: number;
  /** Grace after the wait before a pull is sent again, ms (default 5 000). */
  roomPullGraceMs?: number;
  /** Messages per room pull (default 100). */
  roomPullMax?: number;
  /** Rooms joined at most (default 32). */
  maxRooms?: number;
  /** A room join result not here after this many ms fails the join (default 10 000). */
  roomJoinTimeoutMs?: number;
  /** Time source (default: the channel's clock, else the system clock). */
  clock?: Clock;
  /** Random per-login prefix of generated idempotency keys (default random). */
  keyPrefix?: string;
}

/** The client's lifecycle state. */
export type ClientState = "idle" | "starting" | "running" | "stopped";

/** The outcome of one uplink message. */
export type SendResult =
  | { ok: true; id: number; key: string }
  | { ok: false; id: number; key: string; code: ErrorCode | undefined; message: string; retryable: boolean };

/** A message being sent. */
export interface Sending {
  /** Its id (also in the events). */
  id: number;
  /** Its idempotency key. */
  key: string;
  /** Settles once with the outcome; never rejects. */
  result: Promise<SendResult>;
}

/** The outcome of a room join. */
export type JoinResult =
  | { ok: true; room: string; head: bigint; tail: bigint }
  | { ok: false; room: string; code: ErrorCode | undefined; message: string };

/** The login of the current connection. */
interface LoginState {
  link: Link;
  stream: number;
  accepted: boolean;
  refreshing: boolean;
  /** Acknowledgement state of the reliable downlink on this connection. */
  acks: DownlinkAcks;
  serverWindow: number;
  expiresAtMs: bigint;
}

/**
 * One business's client on a shared {@link PikeChannel}. Listen with
 * {@link on}; every event arrives in order, and nothing the server sends
 * makes a method throw.
 */
export class PikeClient implements Member {
  private readonly channel: PikeChannel;
  private readonly opts: ClientOptions;
  private readonly clock: Clock;
  private readonly store: SessionStore;
  private readonly storeKey: string;
  private readonly emitter: Emitter<ClientEvent>;
  private readonly uplink: UplinkQueue;
  private readonly rooms: Rooms;
  private readonly waiters = new Map<number, (r: SendResult) => void>();
  private readonly joinWaiters = new Map<string, { resolve: (r: JoinResult) => void; timer: Timer }>();
  private readonly ackTimer: Timer;
  private readonly loginTimer: Timer;
  private readonly sendTimer: Timer;
  private readonly refreshTimer: Timer;
  private readonly roomTimer: Timer;
  private readonly keyPrefix: string;
  private lifecycle: ClientState = "idle";
  private session: Session;
  private login: LoginState | undefined;
  private link: Link | undefined;
  private credential: string;
  private nextId = 1;

  /** A client of `channel` for one business. Nothing happens until {@link start}. */
  constructor(channel: PikeChannel, options: ClientOptions) {
    this.channel = channel;
    this.opts = options;
    this.clock = options.clock ?? channel.clock ?? systemClock;
    this.store = options.sessionStore ?? new MemorySessionStore();
    this.storeKey = `${channel.appId}/${options.biz}/${options.alias}`;
    this.session = this.store.load(this.storeKey) ?? { position: 0n, epoch: 0n, routeId: "" };
    this.credential = options.credential;
    this.emitter = new Emitter<ClientEvent>();
    this.uplink = new UplinkQueue(options.maxQueuedSends ?? 1024);
    this.rooms = new Rooms(options.maxRooms ?? 32);
    this.keyPrefix = options.keyPrefix ?? randomHex(16);
    this.ackTimer = new Timer(this.clock, () => this.flushAck());
    this.loginTimer = new Timer(this.clock, () => this.onLoginTimer());
    this.sendTimer = new Timer(this.clock, () => this.onSendTimer());
    this.refreshTimer = new Timer(this.clock, () => void this.onRefreshTimer());
    this.roomTimer = new Timer(this.clock, () => this.onRoomTimer());
  }

  /** The business. */
  get biz(): string {
    return this.opts.biz;
  }

  /** The alias. */
  get alias(): string {
    return this.opts.alias;
  }

  /** The lifecycle state. */
  get state(): ClientState {
    return this.lifecycle;
  }

  /** The resume state (acked position, epoch, route id). */
  get resume(): Session {
    return { ...this.session };
  }

  /** Subscribes to the client's events; returns an unsubscribe function. */
  on(listener: Listener<ClientEvent>): () => void {
    return this.emitter.on(listener);
  }

  /** Starts the client: `start`, then the login, then `running` or `stop`. No-op while started. */
  start(): void {
    if (this.lifecycle === "starting" || this.lifecycle === "running") return;
    this.lifecycle = "starting";
    this.emit({ type: "start" });
    this.channel.attach(this);
  }

  /** Stops the client: logs out, fails pending sends, then `stop`. The resume state is kept. */
  stop(): void {
    this.finish({ kind: "stopped" }, "client stopped");
  }

  /**
   * Replaces the credential: the next login uses it, and a running login
   * with an expiring credential is refreshed with it at once.
   */
  setCredential(credential: string): void {
    this.credential = credential;
    const login = this.login;
    if (login !== undefined && login.accepted && login.expiresAtMs !== 0n && !login.refreshing) {
      this.sendRefresh(login);
    }
  }

  /** Sends an uplink message, with `key` as idempotency key or a generated one. */
  send(payload: Uint8Array, key?: string): Sending {
    const id = this.nextId++;
    const k = key ?? `${this.keyPrefix}-${id}`;
    let resolve!: (r: SendResult) => void;
    const result = new Promise<SendResult>((r) => (resolve = r));
    if (this.lifecycle !== "starting" && this.lifecycle !== "running") {
      resolve({ ok: false, id, key: k, code: undefined, message: "client not started", retryable: false });
      return { id, key: k, result };
    }
    if (k.length === 0 || new TextEncoder().encode(k).length > 128) {
      resolve({ ok: false, id, key: k, code: ErrorCode.INVALID_ARGUMENT, message: "idempotency key must be 1-128 bytes", retryable: false });
      return { id, key: k, result };
    }
    const limit = this.link?.maxFrameLength ?? 1 << 20;
    if (payload.length + k.length + UPLINK_OVERHEAD > limit) {
      resolve({ ok: false, id, key: k, code: ErrorCode.FRAME_TOO_LARGE, message: `payload of ${payload.length} bytes is above the server's frame limit of ${limit}`, retryable: false });
      return { id, key: k, result };
    }
    // Only a key from the random prefix is known to be new; one the
    // application chose (or a prefix it fixed) may have been sent before.
    const generatedKey = key === undefined && this.opts.keyPrefix === undefined;
    if (this.uplink.push(id, k, payload, generatedKey) === undefined) {
      resolve({ ok: false, id, key: k, code: undefined, message: "send queue full", retryable: true });
      return { id, key: k, result };
    }
    this.waiters.set(id, resolve);
    this.pumpUplink();
    return { id, key: k, result };
  }

  /**
   * Joins a live room; `from` continues from a kept offset (default: the
   * tail, i.e. messages published from now on). Room messages arrive as
   * `roomMessages` events; the join is kept across reconnects.
   */
  joinRoom(room: string, from?: bigint): Promise<JoinResult> {
    if (this.lifecycle !== "starting" && this.lifecycle !== "running") {
      return Promise.resolve({ ok: false, room, code: undefined, message: "client not started" });
    }
    if (this.joinWaiters.has(room) || this.rooms.get(room) !== undefined) {
      return Promise.resolve({ ok: false, room, code: undefined, message: "room already joined or joining" });
    }
    const state = this.rooms.add(room, from);
    if (state === undefined) {
      return Promise.resolve({ ok: false, room, code: ErrorCode.LIMIT_EXCEEDED, message: `at most ${this.rooms.limit} rooms` });
    }
    return new Promise<JoinResult>((resolve) => {
      const timer = new Timer(this.clock, () => {
        this.joinWaiters.delete(room);
        this.rooms.remove(room);
        resolve({ ok: false, room, code: undefined, message: "room join timed out" });
      });
      timer.setAt(this.clock.now() + (this.opts.roomJoinTimeoutMs ?? 10_000));
      this.joinWaiters.set(room, { resolve, timer });
      this.sendJoin(room);
    });
  }

  /** Leaves a room (no answer from the server). */
  leaveRoom(room: string): void {
    const waiter = this.joinWaiters.get(room);
    if (waiter !== undefined) {
      waiter.timer.stop();
      this.joinWaiters.delete(room);
      waiter.resolve({ ok: false, room, code: undefined, message: "left before the join completed" });
    }
    if (!this.rooms.remove(room)) return;
    const login = this.login;
    if (login?.accepted === true) login.link.send(FrameType.ROOM_LEAVE, { stream: login.stream, room });
  }

  /** The next offset of a joined room (where the client continues). */
  roomOffset(room: string): bigint | undefined {
    return this.rooms.get(room)?.offset;
  }

  // --- Member ------------------------------------------------------------

  /** @internal */
  inRoom(room: string): boolean {
    return this.rooms.get(room)?.joined === true;
  }

  /** @internal */
  onLinkUp(link: Link): void {
    this.link = link;
    this.sendLogin(link);
  }

  /** @internal */
  onLinkDown(): void {
    this.clearLogin();
    this.link = undefined;
  }

  /** @internal */
  onRefused(code: ErrorCode, message: string): void {
    this.clearLogin();
    this.link = undefined;
    this.finish({ kind: "refused", code, message }, message);
  }

  /** @internal */
  onFrame(frame: DecodedFrame): void {
    const login = this.login;
    if (login === undefined) return;
    switch (frame.type) {
      case FrameType.LOGIN_RESULT:
        this.onLoginResult(login, frame.body);
        return;
      case FrameType.DOWNLINK:
        if (login.accepted) this.onDownlink(login, frame.body);
        return;
      case FrameType.UPLINK_ACK:
        if (login.accepted) this.onUplinkAck(frame.body);
        return;
      case FrameType.ROOM_JOIN_RESULT:
        if (login.accepted) this.onJoinResult(login, frame.body);
        return;
      case FrameType.ROOM_BATCH:
        if (login.accepted) this.onRoomBatch(login, frame.body);
        return;
      case FrameType.ERROR:
        this.onError(login, frame.body);
        return;
      default:
        return;
    }
  }

  // --- login -------------------------------------------------------------

  private sendLogin(link: Link): void {
    if (this.lifecycle !== "starting" && this.lifecycle !== "running") return;
    const stream = link.openStream(this);
    this.login = {
      link,
      stream,
      accepted: false,
      refreshing: false,
      acks: new DownlinkAcks(),
      serverWindow: 0,
      expiresAtMs: 0n,
    };
    link.send(FrameType.LOGIN, {
      stream,
      biz: this.opts.biz,
      alias: this.opts.alias,
      credential: this.credential,
      routeId: this.session.routeId,
      lastAckedSeq: this.session.position,
      sendOnly: this.opts.sendOnly ?? false,
      epoch: this.session.epoch,
    });
    this.loginTimer.setAt(this.clock.now() + (this.opts.loginTimeoutMs ?? 30_000));
  }

  private onLoginTimer(): void {
    const login = this.login;
    if (login === undefined) {
      // The retry of a login refused with a retryable code.
      if (this.link?.alive === true) this.sendLogin(this.link);
      return;
    }
    if (!login.accepted) login.link.fail("login result timed out");
  }

  private onLoginResult(login: LoginState, result: LoginResult): void {
    if (login.accepted) {
      // A credential refresh's result: only code, message and expiry count.
      if (!login.refreshing) return;
      login.refreshing = false;
      if (result.code === ErrorCode.UNSPECIFIED) {
        login.expiresAtMs = result.expiresAtMs;
        this.scheduleRefresh(login);
        this.emit({ type: "credentialRefreshed", expiresAtMs: result.expiresAtMs });
      } else {
        this.emit({ type: "credentialRefreshFailed", code: result.code, message: result.message });
      }
      return;
    }
    this.loginTimer.stop();
    if (result.code !== ErrorCode.UNSPECIFIED) {
      login.link.closeStream(login.stream);
      this.login = undefined;
      if (isFinalLoginCode(result.code)) {
        this.finish({ kind: "refused", code: result.code, message: result.message }, result.message);
      } else {
        this.scheduleLoginRetry();
      }
      return;
    }
    login.accepted = true;
    login.serverWindow = result.uplinkWindow;
    if (result.routeId !== "") this.session.routeId = result.routeId;
    if (result.epoch !== 0n) {
      if (this.session.epoch !== 0n && this.session.epoch !== result.epoch) {
        // A new log: positions of the old one mean nothing.
        this.session.position = 0n;
      }
      this.session.epoch = result.epoch;
    }
    this.saveSession();
    login.expiresAtMs = result.expiresAtMs;
    this.scheduleRefresh(login);
    if (this.lifecycle === "starting") {
      this.lifecycle = "running";
      this.emit({ type: "running", routeId: this.session.routeId });
    }
    if (this.login !== login) return;
    this.pumpUplink();
    for (const room of this.rooms.all()) this.sendJoin(room.name);
  }

  private scheduleLoginRetry(): void {
    // Retried on the same connection after a delay (loginTimer doubles as the retry timer).
    this.loginTimer.setAt(this.clock.now() + (this.opts.loginRetryDelayMs ?? 5_000));
  }

  private clearLogin(): void {
    this.flushAck();
    this.login = undefined;
    this.loginTimer.stop();
    this.ackTimer.stop();
    this.sendTimer.stop();
    this.refreshTimer.stop();
    this.roomTimer.stop();
    this.uplink.onLinkLost();
    this.rooms.onLinkLost();
  }

  private finish(reason: StopReason, message: string): void {
    if (this.lifecycle !== "starting" && this.lifecycle !== "running") return;
    const login = this.login;
    if (login !== undefined) {
      this.flushAck();
      if (login.accepted) login.link.send(FrameType.LOGOUT, { stream: login.stream });
      login.link.closeStream(login.stream);
    }
    this.clearLogin();
    this.link = undefined;
    this.lifecycle = "stopped";
    this.saveSession();
    const code = reason.kind === "refused" ? reason.code : undefined;
    for (const p of this.uplink.drain()) this.settle(p, { ok: false, id: p.id, key: p.key, code, message, retryable: false });
    for (const [room, waiter] of this.joinWaiters) {
      waiter.timer.stop();
      waiter.resolve({ ok: false, room, code, message });
    }
    this.joinWaiters.clear();
    for (const room of this.rooms.all()) this.rooms.remove(room.name);
    this.channel.detach(this);
    this.emit({ type: "stop", reason });
  }

  // --- downlink ----------------------------------------------------------

  private onDownlink(login: LoginState, m: Downlink): void {
    const delivery: Delivery = {
      seq: m.seq,
      messageId: m.messageId,
      priority: m.priority,
      expiresAtMs: m.expiresAtMs,
      payload: m.payload,
    };
    const verdict = login.acks.receive(m.seq, this.session.position);
    switch (verdict.kind) {
      case "transient":
        this.emit({ type: "receive", message: delivery });
        return;
      case "duplicate":
        // A redelivery: drop it and acknowledge again so the server moves on.
        this.sendAck(login, verdict.ack);
        return;
      case "deliver":
        if (verdict.missedFrom !== undefined) this.emit({ type: "gap", expected: verdict.missedFrom, got: m.seq });
        this.emit({ type: "receive", message: delivery });
        this.session.position = m.seq;
        if (login.acks.handedOver() >= (this.opts.ackThreshold ?? 32)) this.flushAck();
        else this.ackTimer.setAtMost(this.clock.now() + (this.opts.ackDelayMs ?? 20));
    }
  }

  private flushAck(): void {
    this.ackTimer.stop();
    const login = this.login;
    if (login === undefined || !login.accepted) return;
    const seq = login.acks.due(this.session.position);
    if (seq !== undefined) this.sendAck(login, seq);
  }

  private sendAck(login: LoginState, seq: bigint): void {
    login.link.send(FrameType.DOWNLINK_ACK, { stream: login.stream, seq });
    login.acks.sent(seq);
    this.saveSession();
  }

  private saveSession(): void {
    try {
      this.store.save(this.storeKey, this.session);
    } catch {
      // The store must not break the client.
    }
  }

  // --- uplink ------------------------------------------------------------

  private pumpUplink(): void {
    const login = this.login;
    if (login === undefined || !login.accepted) return;
    for (const failed of this.uplink.dropExhausted(this.opts.maxSendAttempts ?? 5)) {
      this.settle(failed, { ok: false, id: failed.id, key: failed.key, code: undefined, message: `no ack after ${failed.attempts} transmissions`, retryable: true });
    }
    const configured = this.opts.sendWindow ?? 16;
    const window = login.serverWindow > 0 ? Math.min(configured, login.serverWindow) : configured;
    for (const p of this.uplink.takeSendable(window, this.clock.now())) {
      // `attempts` counts this transmission already: 1 means no connection
      // carried the message before.
      const firstAttempt = p.generatedKey && p.attempts === 1;
      if (!login.link.send(FrameType.UPLINK, { stream: login.stream, seq: p.seq, idempotencyKey: p.key, payload: p.payload, firstAttempt })) return;
    }
    this.armSendTimer();
  }

  private armSendTimer(): void {
    const oldest = this.uplink.oldestSentAt();
    if (oldest === undefined) this.sendTimer.stop();
    else this.sendTimer.setAt(oldest + (this.opts.sendTimeoutMs ?? 30_000));
  }

  private onSendTimer(): void {
    const oldest = this.uplink.oldestSentAt();
    if (oldest === undefined || this.login === undefined) return;
    if (this.clock.now() >= oldest + (this.opts.sendTimeoutMs ?? 30_000)) {
      this.login.link.fail("uplink ack timed out");
    } else {
      this.armSendTimer();
    }
  }

  private onUplinkAck(m: UplinkAck): void {
    if (m.routeId !== "") {
      this.session.routeId = m.routeId;
      this.saveSession();
    }
    const acked = this.uplink.ack(m.seq);
    if (acked === undefined) return;
    if (m.code === ErrorCode.UNSPECIFIED) {
      this.settle(acked, { ok: true, id: acked.id, key: acked.key });
    } else {
      this.settle(acked, { ok: false, id: acked.id, key: acked.key, code: m.code, message: m.message, retryable: isRetryableUplinkCode(m.code) });
    }
    this.pumpUplink();
  }

  private settle(p: PendingSend, result: SendResult): void {
    const waiter = this.waiters.get(p.id);
    this.waiters.delete(p.id);
    if (result.ok) this.emit({ type: "sendSuccess", id: result.id, key: result.key });
    else this.emit({ type: "sendFailure", id: result.id, key: result.key, code: result.code, message: result.message, retryable: result.retryable });
    waiter?.(result);
  }

  // --- rooms -------------------------------------------------------------

  private sendJoin(room: string): void {
    const login = this.login;
    if (login === undefined || !login.accepted) return;
    login.link.send(FrameType.ROOM_JOIN, { stream: login.stream, room });
  }

  private onJoinResult(login: LoginState, m: RoomJoinResult): void {
    const room = this.rooms.get(m.room);
    const waiter = this.joinWaiters.get(m.room);
    if (waiter !== undefined) {
      waiter.timer.stop();
      this.joinWaiters.delete(m.room);
    }
    if (room === undefined) return;
    if (m.code !== ErrorCode.UNSPECIFIED) {
      this.rooms.remove(m.room);
      if (waiter !== undefined) waiter.resolve({ ok: false, room: m.room, code: m.code, message: m.message });
      else this.emit({ type: "roomJoinFailed", room: m.room, code: m.code, message: m.message });
      return;
    }
    room.joined = true;
    if (room.offset === undefined) room.offset = m.tail;
    waiter?.resolve({ ok: true, room: m.room, head: m.head, tail: m.tail });
    this.sendPull(login, m.room);
  }

  private sendPull(login: LoginState, name: string): void {
    const room = this.rooms.get(name);
    if (room === undefined || !room.joined || room.offset === undefined) return;
    const wait = this.opts.roomPullWaitMs ?? 30_000;
    login.link.send(FrameType.ROOM_PULL, { stream: login.stream, room: name, offset: room.offset, max: this.opts.roomPullMax ?? 100, waitMs: wait });
    room.pullDeadline = this.clock.now() + wait + (this.opts.roomPullGraceMs ?? 5_000);
    this.roomTimer.setAtMost(room.pullDeadline);
  }

  private onRoomTimer(): void {
    const login = this.login;
    if (login === undefined || !login.accepted) return;
    const now = this.clock.now();
    let next: number | undefined;
    for (const room of this.rooms.all()) {
      if (room.pullDeadline === undefined) continue;
      if (room.pullDeadline <= now) this.sendPull(login, room.name);
      if (room.pullDeadline !== undefined && (next === undefined || room.pullDeadline < next)) next = room.pullDeadline;
    }
    if (next !== undefined) this.roomTimer.setAt(next);
  }

  private onRoomBatch(login: LoginState, m: RoomBatch): void {
    const room = this.rooms.get(m.room);
    if (room === undefined || !room.joined || room.offset === undefined) return;
    const messages = applyBatch(room, m);
    if (messages.length > 0 || m.missed > 0n) this.emit({ type: "roomMessages", room: m.room, messages, missed: m.missed });
    // A pull answer ends the held pull: pull on. A pushed batch leaves the held pull in place.
    if (!m.pushed && this.rooms.get(m.room) === room) this.sendPull(login, m.room);
  }

  // --- errors and credentials -------------------------------------------

  private onError(login: LoginState, m: ErrorFrame): void {
    switch (m.code) {
      case ErrorCode.TOKEN_EXPIRED:
      case ErrorCode.REPLACED:
        // The login ended for good.
        login.link.closeStream(login.stream);
        this.login = undefined;
        this.finish({ kind: "refused", code: m.code, message: m.message }, m.message);
        return;
      case ErrorCode.NOT_LOGGED_IN:
        if (login.accepted && m.frameType !== FrameType.LOGIN) {
          // The server lost the login: log in again on a new stream.
          login.link.closeStream(login.stream);
          const link = login.link;
          this.clearLogin();
          this.sendLogin(link);
        } else if (login.refreshing) {
          login.refreshing = false;
        }
        return;
      case ErrorCode.ALREADY_LOGGED_IN:
        if (login.refreshing) login.refreshing = false;
        return;
      default:
        return;
    }
  }

  private scheduleRefresh(login: LoginState): void {
    this.refreshTimer.stop();
    if (login.expiresAtMs === 0n) return;
    this.refreshTimer.setAt(refreshAt(login.expiresAtMs, login.link.serverClockOffsetMs, this.clock.now(), this.opts.credentialRefreshMarginMs ?? 60_000));
  }

  private async onRefreshTimer(): Promise<void> {
    const login = this.login;
    if (login === undefined || !login.accepted || login.expiresAtMs === 0n) return;
    const provider = this.opts.credentialProvider;
    let fresh: string | undefined;
    if (provider !== undefined) {
      fresh = await withTimeout(
        provider({ biz: this.opts.biz, alias: this.opts.alias, expiresAtMs: login.expiresAtMs }),
        this.clock,
        this.opts.credentialProviderTimeoutMs ?? 10_000,
      );
    }
    if (this.login !== login) return;
    if (fresh === undefined || fresh === "") {
      this.emit({ type: "credentialExpiring", expiresAtMs: login.expiresAtMs });
      return;
    }
    this.credential = fresh;
    this.sendRefresh(login);
  }

  private sendRefresh(login: LoginState): void {
    login.refreshing = true;
    login.link.send(FrameType.LOGIN, {
      stream: login.stream,
      biz: this.opts.biz,
      alias: this.opts.alias,
      credential: this.credential,
    });
  }

  private emit(event: ClientEvent): void {
    this.emitter.emit(event);
  }
}

/** `n` random hex digits. */
function randomHex(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += Math.floor(Math.random() * 16).toString(16);
  return s;
}
