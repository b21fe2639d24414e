import { AppError, unavailable } from '../errors';

/**
 * How many of the query API's reads (lists, a message, the stats, the relays) run at once in
 * this process. Without DATABASE_READ_URL they take their connections from the very pool the
 * callbacks' commits use: the statement timeout (read-timeout.ts) bounds how long one read holds
 * a connection, not how many hold one. Ten dashboards asking for a costly list at once would
 * take every connection for seconds, and each callback would wait for the pool meanwhile — its
 * acknowledgement late, or past the pool's 2 s wait, spooled.
 *
 * So at most `concurrency` reads hold a connection; later ones wait here for at most
 * `maxWaitMs`, and are then answered 503 + Retry-After without having touched the database. A
 * waiting read costs a closure, not a connection; the commits never queue behind it.
 *
 * The turns are shared between callers (an API token: http/rate-limit.ts's bearerTokenKey). The
 * rate limit counts a caller's requests, not how long they hold a turn: one dashboard whose
 * reads are slow, asking again as each is answered, would otherwise hold every turn, and every
 * other caller would queue behind its waiting reads until refused. So while another caller is
 * about — reading, waiting, or having asked within `recentMs` — one caller holds at most
 * `concurrency − 1` turns (1 when there is one): the other finds a turn at once for its next
 * read. A caller alone (most deployments have one dashboard) may use every turn. Waiting reads
 * start in order within a caller and by turns across callers (round-robin): a caller with many
 * reads waiting delays another's next read by one of its own at most.
 */
export interface ReadGate {
  /**
   * Runs `read` once a turn is free. `abandoned` is asked when the turn comes: a caller that
   * has gone away meanwhile (its connection closed) is not read for. `caller` names whose read
   * it is; reads that name none share one caller the gate cannot tell apart, and so cannot
   * hold to a share: they take the turns as they come, in order.
   */
  run<T>(read: () => Promise<T>, abandoned?: () => boolean, caller?: string): Promise<T>;
  /** Reads holding a turn now (for sw_status_query_reads_running). */
  readonly running: number;
  /** Reads waiting for a turn now (for sw_status_query_reads_waiting). */
  readonly waiting: number;
}

/** For routes built without a gate (tests of one route): every read runs at once. */
export const UNGATED_READS: ReadGate = { run: (read) => read(), running: 0, waiting: 0 };

/** The caller of reads that name none (a symbol: no bearerTokenKey can be it). */
const UNNAMED = Symbol('reads naming no caller');
type Caller = string | typeof UNNAMED;

interface Waiting {
  /** Called in its turn; takes it unless its caller went away meanwhile. */
  start(): void;
}

/** How long a caller that asked for a read counts as about: a dashboard polls within a minute. */
const RECENT_MS = 60_000;

export function createReadGate({
  concurrency,
  maxWaitMs,
  recentMs = RECENT_MS,
  clock = () => performance.now(),
}: {
  concurrency: number;
  /** Unset: a read waits as long as its turn takes (the change feed's pages). */
  maxWaitMs?: number;
  recentMs?: number;
  /** Milliseconds, monotonic (tests pass their own). */
  clock?: () => number;
}): ReadGate {
  const perCaller = Math.max(1, concurrency - 1);
  let running = 0;
  let waiting = 0;
  // Turns held per caller; a caller holding none has no entry.
  const held = new Map<Caller, number>();
  // Waiting reads per caller, in arrival order; a caller with none waiting has no entry. The
  // map's order is the round-robin's: a caller just served goes to the back.
  const lines = new Map<Caller, Waiting[]>();
  // When each named caller last asked, least recent first. As many entries as API tokens at
  // most (only authenticated reads reach the gate), and those older than recentMs go.
  const asked = new Map<string, number>();
  let recheck: NodeJS.Timeout | undefined;

  const recent = (at: number, now: number): boolean => now - at < recentMs;
  const forgetOld = (now: number): void => {
    for (const [caller, at] of asked) {
      if (recent(at, now)) return;
      asked.delete(caller);
    }
  };
  /** Another named caller is reading, waiting, or asked within recentMs. */
  const othersAbout = (caller: string, now: number): boolean => {
    for (const other of held.keys()) if (other !== caller && other !== UNNAMED) return true;
    for (const other of lines.keys()) if (other !== caller && other !== UNNAMED) return true;
    for (const [other, at] of asked) if (other !== caller && recent(at, now)) return true;
    return false;
  };
  // Reads that name no caller cannot be told apart: they take the turns as they come.
  const capOf = (caller: Caller): number =>
    caller === UNNAMED || !othersAbout(caller, clock()) ? concurrency : perCaller;

  const take = (caller: Caller): void => {
    running++;
    held.set(caller, (held.get(caller) ?? 0) + 1);
  };
  const giveBack = (caller: Caller): void => {
    running--;
    const left = held.get(caller)! - 1;
    if (left === 0) held.delete(caller);
    else held.set(caller, left);
    dispatch();
  };
  const below = (caller: Caller): boolean => (held.get(caller) ?? 0) < capOf(caller);

  /** The next waiting read by turns across callers, among those below their share. */
  const nextWaiting = (): Waiting | undefined => {
    for (const [caller, line] of lines) {
      if (!below(caller)) continue;
      const next = line.shift()!;
      waiting--;
      lines.delete(caller);
      if (line.length > 0) lines.set(caller, line);
      return next;
    }
    return undefined;
  };

  /**
   * Hands the free turns to waiting reads. Afterwards, while a turn is free, every caller still
   * waiting holds its share: a caller that arrives then may take a free turn at once.
   */
  const dispatch = (): void => {
    while (running < concurrency) {
      const next = nextWaiting();
      if (!next) {
        if (lines.size > 0) recheckWhenAlone();
        return;
      }
      // A read whose caller went away takes no turn: the loop hands it on.
      next.start();
    }
  };

  /**
   * A turn is free and reads wait at their caller's share, kept for another caller that asked
   * lately: when that caller stops counting as about, they may take it. Nothing else would hand
   * it to them until a read ends.
   */
  const recheckWhenAlone = (): void => {
    if (recheck !== undefined) return;
    const now = clock();
    // Only the ask times to come: a caller reading or waiting ends that itself (giveBack, or
    // its read refused for waiting), and each dispatches.
    let soonest = Infinity;
    for (const at of asked.values()) {
      if (recent(at, now)) soonest = Math.min(soonest, at + recentMs - now);
    }
    if (soonest === Infinity) return;
    recheck = setTimeout(
      () => {
        recheck = undefined;
        forgetOld(clock());
        dispatch();
      },
      Math.max(0, soonest),
    ).unref();
  };

  /** A read refused before its turn: out of its caller's line, which goes once empty. */
  const leaveLine = (caller: Caller, entry: Waiting): void => {
    const line = lines.get(caller);
    const at = line?.indexOf(entry) ?? -1;
    if (!line || at < 0) return;
    line.splice(at, 1);
    waiting--;
    if (line.length === 0) lines.delete(caller);
  };

  return {
    get running() {
      return running;
    },
    get waiting() {
      return waiting;
    },
    run<T>(read: () => Promise<T>, abandoned?: () => boolean, caller?: string): Promise<T> {
      const callerKey: Caller = caller ?? UNNAMED;
      if (caller !== undefined) {
        const now = clock();
        forgetOld(now);
        asked.delete(caller);
        asked.set(caller, now);
      }
      const go = (): Promise<T> => {
        take(callerKey);
        let result: Promise<T>;
        try {
          result = read();
        } catch (error) {
          result = Promise.reject(error);
        }
        return result.finally(() => giveBack(callerKey));
      };
      if (running < concurrency && below(callerKey) && !lines.has(callerKey)) return go();
      return new Promise<T>((resolve, reject) => {
        const entry: Waiting = {
          start() {
            clearTimeout(timer);
            if (abandoned?.()) {
              // Its turn passes straight on: nothing was read, nothing is held.
              reject(gone());
              return;
            }
            go().then(resolve, reject);
          },
        };
        const timer =
          maxWaitMs === undefined
            ? undefined
            : setTimeout(() => {
                leaveLine(callerKey, entry);
                // Its caller may have been what kept a free turn from another's reads.
                dispatch();
                reject(
                  unavailable(
                    'Too many query API reads are waiting on this replica; retry shortly',
                    1,
                  ),
                );
              }, maxWaitMs).unref();
        const line = lines.get(callerKey);
        if (line) line.push(entry);
        else lines.set(callerKey, [entry]);
        waiting++;
        // A free turn held back for another caller about lately: this read takes it once that
        // caller no longer is (recheckWhenAlone).
        if (running < concurrency) dispatch();
      });
    },
  };
}

/** 499 (a client that closed its request, as nginx logs it): nobody reads it but the log. */
function gone(): AppError {
  return new AppError(499, 'client_closed', 'The caller closed its connection before its read');
}
