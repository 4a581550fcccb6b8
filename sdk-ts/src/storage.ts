/**
 * Where a client keeps its resume state per (app, biz, alias): the acked
 * position, the log epoch it belongs to and the route id. In memory by
 * default; {@link WebStorageStore} keeps it in `localStorage` (or any
 * Storage-like object) so that a reloaded page resumes where it left off.
 */

/** The resume state of one login. */
export interface Session {
  /** The highest seq acknowledged (handed to the application). */
  position: bigint;
  /** The log epoch the position belongs to (0n: none known). */
  epoch: bigint;
  /** The route id of the last login result or uplink ack ("" when none). */
  routeId: string;
}

/** Loads and saves {@link Session}s by key. Must not throw (errors are swallowed by the SDK). */
export interface SessionStore {
  /** The saved session, or undefined. */
  load(key: string): Session | undefined;
  /** Saves the session. */
  save(key: string, session: Session): void;
}

/** A session store in memory. */
export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, Session>();

  /** @inheritdoc */
  load(key: string): Session | undefined {
    const s = this.sessions.get(key);
    return s === undefined ? undefined : { ...s };
  }

  /** @inheritdoc */
  save(key: string, session: Session): void {
    this.sessions.set(key, { ...session });
  }
}

/** The part of the Web Storage API (`localStorage`) the store uses. */
export interface StorageLike {
  /** The value of `key`, or null. */
  getItem(key: string): string | null;
  /** Stores `value` under `key`. */
  setItem(key: string, value: string): void;
}

/** A session store on Web Storage, as JSON under `prefix + key`. */
export class WebStorageStore implements SessionStore {
  /** A store on `storage` (e.g. `window.localStorage`). */
  constructor(
    private readonly storage: StorageLike,
    private readonly prefix = "pike:",
  ) {}

  /** @inheritdoc */
  load(key: string): Session | undefined {
    try {
      const text = this.storage.getItem(this.prefix + key);
      if (text === null) return undefined;
      const v: unknown = JSON.parse(text);
      if (typeof v !== "object" || v === null) return undefined;
      const o = v as Record<string, unknown>;
      if (typeof o.position !== "string" || typeof o.epoch !== "string" || typeof o.routeId !== "string") return undefined;
      return { position: BigInt(o.position), epoch: BigInt(o.epoch), routeId: o.routeId };
    } catch {
      return undefined;
    }
  }

  /** @inheritdoc */
  save(key: string, session: Session): void {
    try {
      this.storage.setItem(
        this.prefix + key,
        JSON.stringify({ position: session.position.toString(), epoch: session.epoch.toString(), routeId: session.routeId }),
      );
    } catch {
      // Quota or privacy mode: the position stays in memory.
    }
  }
}
