/**
 * The WebSocket the SDK needs, as an interface: the browser's global
 * `WebSocket` and the `ws` package's both fit it, and tests inject a fake.
 */

/** The subprotocol of the Pike WebSocket transport. */
export const SUBPROTOCOL = "pike.v1";

/**
 * An event handler property. Declared through a method so that its parameter
 * is checked bivariantly: the DOM's `(ev: MessageEvent) => any` and `ws`'s
 * handler types fit without casts.
 */
export type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** The subset of the WHATWG WebSocket the SDK uses. */
export interface WebSocketLike {
  /** `"arraybuffer"` is set by the SDK before use. */
  binaryType: string;
  /** The subprotocol the server chose. */
  readonly protocol: string;
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** Queued bytes not yet sent (optional in fakes). */
  readonly bufferedAmount?: number;
  /** Sends one binary message. */
  send(data: Uint8Array): void;
  /** Closes the socket. */
  close(code?: number, reason?: string): void;
  /** Called when the socket is open. */
  onopen: Handler<unknown> | null;
  /** Called with each received message. */
  onmessage: Handler<{ data: unknown }> | null;
  /** Called on an error (a close follows). */
  onerror: Handler<unknown> | null;
  /** Called once the socket is closed. */
  onclose: Handler<{ code?: number; reason?: string }> | null;
}

/** Opens a WebSocket to `url` asking for `protocols`. */
export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

/** A constructor like the global `WebSocket` or `ws`'s `WebSocket`. */
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

/** A factory from a WebSocket constructor (e.g. `globalThis.WebSocket`, or `WebSocket` from `ws`). */
export function factoryFromConstructor(ctor: WebSocketConstructor): WebSocketFactory {
  return (url, protocols) => new ctor(url, protocols);
}

/** The received message's bytes, or undefined for a text message. */
export function messageBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) {
    // `ws` with binaryType "fragments": a list of Buffers.
    const parts = data.filter((p): p is Uint8Array => p instanceof Uint8Array);
    const total = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  return undefined;
}
