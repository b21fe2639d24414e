import { Client } from 'pg';
import type { Logger } from '../logger';
import { createReasonCount, errorCode } from '../db/failure-reason';

/**
 * Wakes the change feed's long-polls when events commit: at once for this process's own
 * commits (RecordOptions.onCommitted), and through PostgreSQL's LISTEN/NOTIFY for other
 * replicas'. A wake-up is only a hint — the feed query decides what a consumer gets — so a
 * lost or early hint costs a query, never an event.
 *
 * The hint is one `NOTIFY sw_status_events` per committed batch at most, sent after the
 * commit from this process's own listening connection, not inside the batch's transaction: a
 * transaction that notifies takes a cluster-wide lock at commit to keep the notification
 * queue in commit order, which would make concurrent batches commit one at a time. Hints are
 * coalesced (one in flight, one more queued, at least HINT_SPACING_MS apart: under load every
 * batch would otherwise cost the database a transaction more), and the connection runs with
 * synchronous_commit off: a hint need not wait for a disk flush.
 *
 * LISTEN needs a connection of its own (a pooled one would lose it on release); it is
 * reopened with back-off when the database restarts, and `listening()` tells the feed to
 * poll more often meanwhile. Hints from this process are ignored on arrival (the local wake
 * came first).
 */
export interface FeedSignal {
  /**
   * Resolves on the next wake-up ('commit'), after `ms` ('timeout'), when `abort` fires, or
   * at once once the signal is closed ('closed').
   */
  next(ms: number, abort?: AbortSignal): Promise<'commit' | 'timeout' | 'closed'>;
  /**
   * next(), also ended ('look') by the process's look tick. Hints can be lost (a writer that
   * does not hint, a connection dropping one), so a long-poll that nothing wakes looks on its
   * own: every second while hints arrive, five times a second while they do not — together
   * with every other waiting long-poll, so that their reads join (feed-reads.ts) instead of
   * each reading on a timer of its own.
   */
  nextLook(
    ms: number,
    abort?: AbortSignal,
    seen?: number,
  ): Promise<'commit' | 'look' | 'timeout' | 'closed'>;
  /**
   * How many commits have been announced so far. A caller that notes it before a read and
   * passes it to nextLook() as `seen` is answered 'commit' at once when one was announced
   * meanwhile: that commit's wake-up came while the caller was not waiting, and its read may
   * have taken its snapshot before the commit.
   */
  readonly commits: number;
  /**
   * Waits `ms` whatever commits meanwhile (a long-poll looking on a timer while an older
   * transaction holds the horizon); ends early, as 'closed', when the signal closes or `abort`
   * fires, so that shutdown and a client that went away end that wait too.
   */
  sleep(ms: number, abort?: AbortSignal): Promise<'timeout' | 'closed'>;
  /** This process committed new events: wake local waiters and hint the other replicas. */
  committed(): void;
  /** Whether other replicas' hints are being received. */
  listening(): boolean;
  readonly closed: boolean;
  /** Ends every wait and closes the listening connection (shutdown). */
  close(): Promise<void>;
}

export const FEED_CHANNEL = 'sw_status_events';
const PING_MS = 10_000;
const HINT_SPACING_MS = 5;
const MAX_BACKOFF_MS = 5_000;

export interface FeedSignalOptions {
  /** The database to LISTEN on; without it, only this process's commits wake the feed. */
  connectionString?: string;
  logger: Logger;
  /** The look tick while listening (1 s); a test sets it long to see the hints alone work. */
  pollWhileListeningMs?: number;
}

const POLL_WHILE_DEAF_MS = 200;

interface Waiter {
  /** Ended by the look tick too (nextLook). */
  looks: boolean;
  done(why: 'commit' | 'look' | 'timeout' | 'closed'): void;
}

export function createFeedSignal({
  connectionString,
  logger,
  pollWhileListeningMs = 1_000,
}: FeedSignalOptions): FeedSignal {
  let waiters = new Set<Waiter>();
  let lookTimer: NodeJS.Timeout | null = null;
  let closed = false;
  let client: Client | null = null;
  let connected = false;
  let backoffMs = 100;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let pingTimer: NodeJS.Timeout | null = null;
  let notifying = false;
  let notifyAgain = false;
  let commits = 0;

  const wake = (why: 'commit' | 'closed'): void => {
    if (why === 'commit') commits += 1;
    const woken = waiters;
    waiters = new Set();
    for (const waiter of woken) waiter.done(why);
  };

  // One timer for every waiter that looks on its own, started by the first of them: a waiter
  // that comes later looks sooner than one interval after it began, never later.
  const look = (): void => {
    lookTimer = null;
    for (const waiter of [...waiters]) if (waiter.looks) waiter.done('look');
  };
  const scheduleLook = (): void => {
    if (lookTimer !== null) return;
    lookTimer = setTimeout(look, connected ? pollWhileListeningMs : POLL_WHILE_DEAF_MS);
    lookTimer.unref();
  };

  const hint = (): void => {
    if (!client || !connected) return;
    if (notifying) {
      notifyAgain = true;
      return;
    }
    notifying = true;
    client
      .query(`NOTIFY ${FEED_CHANNEL}`)
      .catch(() => undefined) // the connection's own error handler reconnects
      .finally(() => {
        setTimeout(() => {
          notifying = false;
          if (notifyAgain) {
            notifyAgain = false;
            hint();
          }
        }, HINT_SPACING_MS).unref();
      });
  };

  const scheduleReconnect = (): void => {
    if (closed || reconnectTimer) return;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      reconnect();
    }, backoffMs);
    reconnectTimer.unref();
    backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
  };

  const lost = (current: Client, error?: unknown): void => {
    if (client !== current) return;
    if (connected)
      logger.warn({ err: error }, 'change feed: listening connection lost; reconnecting');
    client = null;
    connected = false;
    if (pingTimer) clearInterval(pingTimer);
    pingTimer = null;
    current.removeAllListeners('notification');
    current.on('error', () => undefined);
    void endWithin(current, END_WAIT_MS);
    scheduleReconnect();
  };

  // Why the listening connection could not even be created: each reason logged once.
  const unopenable = createReasonCount();

  async function connect(): Promise<void> {
    if (closed || !connectionString) return;
    let current: Client;
    try {
      // node-postgres reads the sslrootcert (sslcert, sslkey) file named in the connection
      // string here, synchronously, at each new connection: a CA file that is missing (its
      // optional ConfigMap absent, or deleted while pods run) throws. Thrown out of this async
      // function, it was an unhandled rejection that ended the process — every pod at once.
      // It is a lost connection instead: the feed polls, and this retries with back-off.
      current = new Client({
        connectionString,
        keepAlive: true,
        connectionTimeoutMillis: 5_000,
        query_timeout: 5_000,
      });
    } catch (error) {
      const reason = errorText(error);
      if (unopenable.failed(reason)) {
        logger.warn({ err: reason }, 'change feed: cannot open the listening connection; retrying');
      }
      scheduleReconnect();
      return;
    }
    unopenable.succeeded();
    client = current;
    current.on('error', (error) => lost(current, error));
    current.on('end', () => lost(current));
    current.on('notification', (message) => {
      // node-postgres keeps the backend's pid (from BackendKeyData) but does not type it.
      if (message.processId !== (current as unknown as { processID?: number }).processID) {
        wake('commit');
      }
    });
    try {
      await current.connect();
      await current.query('SET synchronous_commit = off');
      // Idle between its pings by design: a role's or database's idle_session_timeout below
      // PING_MS (some managed services set one) ended it every few seconds, each time a warning
      // and a reconnect. Its own pings already find a dead connection. The setting exists from
      // PostgreSQL 14: on an older server this sets nothing.
      await current.query(
        "SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'",
      );
      await current.query(`LISTEN ${FEED_CHANNEL}`);
    } catch (error) {
      lost(current, error);
      return;
    }
    if (client !== current || closed) return;
    connected = true;
    backoffMs = 100;
    // A silently dead connection (a network partition) would receive nothing: look.
    pingTimer = setInterval(() => {
      current.query('SELECT 1').catch((error: unknown) => lost(current, error));
    }, PING_MS);
    pingTimer.unref();
    logger.info("change feed: listening for other replicas' commits");
    // Commits may have happened while nobody listened: let every waiter look again.
    wake('commit');
  }

  // connect() handles its own failures; a rejection all the same must not end the process.
  const reconnect = (): void => {
    connect().catch((error: unknown) => {
      logger.warn({ err: errorText(error) }, 'change feed: listening connection failed');
      scheduleReconnect();
    });
  };
  reconnect();

  type Why = 'commit' | 'look' | 'timeout' | 'closed';
  const wait = (
    ms: number,
    abort: AbortSignal | undefined,
    looks: boolean,
    seen?: number,
  ): Promise<Why> => {
    // An abort that fired already would never call its listener.
    if (closed || abort?.aborted) return Promise.resolve('closed');
    if (seen !== undefined && seen !== commits) return Promise.resolve('commit');
    return new Promise((resolve) => {
      const waiter: Waiter = {
        looks,
        done(why) {
          clearTimeout(timer);
          waiters.delete(waiter);
          abort?.removeEventListener('abort', onAbort);
          resolve(why);
        },
      };
      const onAbort = (): void => waiter.done('closed');
      const timer = setTimeout(() => waiter.done('timeout'), ms);
      waiters.add(waiter);
      if (looks) scheduleLook();
      abort?.addEventListener('abort', onAbort, { once: true });
    });
  };
  // A waiter that does not look is never ended by the tick.
  const next = (ms: number, abort?: AbortSignal) =>
    wait(ms, abort, false) as Promise<Exclude<Why, 'look'>>;

  return {
    next,
    nextLook: (ms, abort, seen) => wait(ms, abort, true, seen),
    get commits() {
      return commits;
    },
    // next() with commits let pass: it ends the same way on shutdown and abort.
    async sleep(ms, abort) {
      const until = performance.now() + ms;
      for (;;) {
        const why = await next(Math.max(0, until - performance.now()), abort);
        if (why === 'closed') return 'closed';
        if (why === 'timeout') return 'timeout';
      }
    },
    committed() {
      wake('commit');
      hint();
    },
    listening: () => connected,
    get closed() {
      return closed;
    },
    async close() {
      if (closed) return;
      closed = true;
      wake('closed');
      if (reconnectTimer) clearTimeout(reconnectTimer);
      if (pingTimer) clearInterval(pingTimer);
      if (lookTimer) clearTimeout(lookTimer);
      const current = client;
      client = null;
      connected = false;
      if (current) {
        current.removeAllListeners('end');
        current.on('error', () => undefined);
        await endWithin(current, END_WAIT_MS);
      }
    },
  };
}

/** How long a goodbye to the database may take before its socket is cut. */
const END_WAIT_MS = 1_000;

/**
 * Ends a client, and cuts its socket if the server has not closed the connection within `ms`:
 * end() waits for the server's side to close, which a database gone silent (a partition, a
 * frozen VM, a failed-over primary's old address) never does — and shutdown waits on close()
 * before it closes the listeners.
 */
async function endWithin(client: Client, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const cut = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      client.connection.stream.destroy();
      resolve();
    }, ms);
  });
  await Promise.race([client.end().catch(() => undefined), cut]);
  clearTimeout(timer);
}

/**
 * An error's code and message, for the log: node-postgres and Node errors name files, hosts and
 * users, never passwords (pg-connection-string hides the URL an Invalid URL error would quote).
 */
function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = errorCode(error);
  return code && !error.message.startsWith(code) ? `${code}: ${error.message}` : error.message;
}
