/**
 * Bytes that requests or answers under way hold in memory together, bounded: the large
 * callback bodies (callbacks/callbacks.routes.ts), the send proxy's request bodies (proxy/proxy-http.ts)
 * and SignalWire's answers to sends (proxy/signalwire-client.ts). Each holder counts what it
 * holds and gives it back when done. One holder always fits, whatever the bound: a bound
 * smaller than one body (a test's) still lets bodies through one at a time.
 */
export interface ByteBudget {
  /** The most held together, but by one holder alone. */
  readonly max: number;
  /** Whether `more` bytes fit beside what the others hold; `mine` is what the asker holds. */
  fits(mine: number, more: number): boolean;
  take(bytes: number): void;
  give(bytes: number): void;
}

export function byteBudget(max: number): ByteBudget {
  let held = 0;
  return {
    max,
    fits: (mine, more) => held === mine || held + more <= max,
    take(bytes) {
      held += bytes;
    },
    give(bytes) {
      held -= bytes;
    },
  };
}
