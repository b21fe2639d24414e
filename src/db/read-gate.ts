import { AppError, unavailable } from '../errors';

/**
 * How many of the query API's reads (lists, a message, the stats, the relays) run at once in
 * this process. Without DATABASE_READ_URL they take their connections from the very pool the
 * callbacks' commits use: the statement timeout (read-timeout.ts) bounds how long one read holds
 * a connection, not how many hold one. Ten dashboards asking for a costly list at once would
 * take every connection for seconds, and each callback would wait for the pool meanwhile — its
 * acknowledgement late, or past the pool's 2 s wait, spooled.
 *
 * So at most `concurrency` reads hold a connection; later ones wait here, in order, for at most
 * `maxWaitMs`, and are then answered 503 + Retry-After without having touched the database. A
 * waiting read costs a closure, not a connection; the commits never queue behind it.
 */
export interface ReadGate {
  /**
   * Runs `read` once a turn is free. `abandoned` is asked when the turn comes: a caller that
   * has gone away meanwhile (its connection closed) is not read for.
   */
  run<T>(read: () => Promise<T>, abandoned?: () => boolean): Promise<T>;
  /** Reads holding a turn now (for sw_status_query_reads_running). */
  readonly running: number;
  /** Reads waiting for a turn now (for sw_status_query_reads_waiting). */
  readonly waiting: number;
}

/** For routes built without a gate (tests of one route): every read runs at once. */
export const UNGATED_READS: ReadGate = { run: (read) => read(), running: 0, waiting: 0 };

interface Waiting {
  start(): void;
}

export function createReadGate({
  concurrency,
  maxWaitMs,
}: {
  concurrency: number;
  /** Unset: a read waits as long as its turn takes (the change feed's pages). */
  maxWaitMs?: number;
}): ReadGate {
  let running = 0;
  const queue: Waiting[] = [];

  const release = (): void => {
    running--;
    const next = queue.shift();
    if (next) next.start();
  };

  return {
    get running() {
      return running;
    },
    get waiting() {
      return queue.length;
    },
    run<T>(read: () => Promise<T>, abandoned?: () => boolean): Promise<T> {
      const go = (): Promise<T> => {
        running++;
        let result: Promise<T>;
        try {
          result = read();
        } catch (error) {
          result = Promise.reject(error);
        }
        return result.finally(release);
      };
      if (running < concurrency && queue.length === 0) return go();
      return new Promise<T>((resolve, reject) => {
        const entry: Waiting = {
          start() {
            clearTimeout(timer);
            if (abandoned?.()) {
              // Its turn passes straight on: nothing was read, nothing is held.
              reject(gone());
              running++;
              release();
              return;
            }
            go().then(resolve, reject);
          },
        };
        const timer =
          maxWaitMs === undefined
            ? undefined
            : setTimeout(() => {
                const at = queue.indexOf(entry);
                if (at >= 0) queue.splice(at, 1);
                reject(
                  unavailable(
                    'Too many query API reads are waiting on this replica; retry shortly',
                    1,
                  ),
                );
              }, maxWaitMs).unref();
        queue.push(entry);
      });
    },
  };
}

/** 499 (a client that closed its request, as nginx logs it): nobody reads it but the log. */
function gone(): AppError {
  return new AppError(499, 'client_closed', 'The caller closed its connection before its read');
}
