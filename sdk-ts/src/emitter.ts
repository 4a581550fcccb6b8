/** A tiny typed event emitter whose listeners cannot break the SDK. */

/** Listener of events of type `E`. */
export type Listener<E> = (event: E) => void;

/** Emits events of type `E` to listeners; a throwing listener is reported to `onListenerError` and skipped. */
export class Emitter<E> {
  private readonly listeners = new Set<Listener<E>>();

  /** An emitter reporting listener errors to `onListenerError`. */
  constructor(private readonly onListenerError: (error: unknown) => void = () => {}) {}

  /** Adds a listener; returns a function removing it. */
  on(listener: Listener<E>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls every listener with `event`. */
  emit(event: E): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (error) {
        this.onListenerError(error);
      }
    }
  }
}
