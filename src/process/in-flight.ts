/**
 * Work under way that a shutdown waits for before it cuts the connections: the send proxy's
 * sends, each of which must get SignalWire's answer back to its caller (process/shutdown.ts).
 */
export interface InFlight {
  /** Counts `work` until it settles; returns it unchanged. */
  track<T>(work: Promise<T>): Promise<T>;
  readonly size: number;
  /** Resolves once nothing is in flight (at once when nothing is). */
  settled(): Promise<void>;
}

export function createInFlight(): InFlight {
  let size = 0;
  let waiting: Array<() => void> = [];
  const done = (): void => {
    size--;
    if (size > 0) return;
    const resolve = waiting;
    waiting = [];
    for (const wake of resolve) wake();
  };
  return {
    get size() {
      return size;
    },
    track(work) {
      size++;
      work.then(done, done);
      return work;
    },
    settled() {
      return size === 0 ? Promise.resolve() : new Promise((resolve) => waiting.push(resolve));
    },
  };
}
