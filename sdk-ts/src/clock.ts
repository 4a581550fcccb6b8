/** Time and timers, injectable so that tests run on a virtual clock. */

/** An opaque timer handle returned by {@link Clock.setTimeout}. */
export type TimerHandle = unknown;

/** The time source and timer service the SDK uses for every wait. */
export interface Clock {
  /** Milliseconds on a monotonic-enough clock (only differences are used). */
  now(): number;
  /** Calls `callback` once after `ms` milliseconds. */
  setTimeout(callback: () => void, ms: number): TimerHandle;
  /** Cancels a timer; unknown or fired handles are ignored. */
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock: `Date.now()` and the global timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
};

/** A random source in [0, 1), injectable for deterministic tests. */
export type Random = () => number;

/** One re-armable timer on a {@link Clock}. */
export class Timer {
  private handle: TimerHandle | undefined;
  private at: number | undefined;

  /** A timer on `clock` calling `callback` when it fires. */
  constructor(
    private readonly clock: Clock,
    private readonly callback: () => void,
  ) {}

  /** When the timer fires (clock ms), if armed. */
  get deadline(): number | undefined {
    return this.at;
  }

  /** (Re)arms the timer to fire at `at` (clock ms). */
  setAt(at: number): void {
    this.stop();
    this.at = at;
    this.handle = this.clock.setTimeout(() => {
      this.handle = undefined;
      this.at = undefined;
      this.callback();
    }, Math.max(0, at - this.clock.now()));
  }

  /** Arms the timer unless it is armed to fire earlier already. */
  setAtMost(at: number): void {
    if (this.at === undefined || at < this.at) this.setAt(at);
  }

  /** Disarms the timer. */
  stop(): void {
    if (this.handle !== undefined) this.clock.clearTimeout(this.handle);
    this.handle = undefined;
    this.at = undefined;
  }
}
