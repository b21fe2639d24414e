import type { Db } from '../db/database';
import { poolTurns } from '../db/pool-turns';
import type { Logger } from '../logger';
import { forgetMessageText } from '../messages/redaction';
import type { RedactionScope } from '../messages/redaction';
import { forgetRelayedText } from '../relay/relay-redaction';

/**
 * Turns for the redactions on a pool (db/pool-turns.ts): each is a transaction or two on one
 * message's rows, each statement bounded (REDACTION_STATEMENT_TIMEOUT_MS). Without them, apps
 * deleting a message whose rows another session held (an operator's `SELECT … FOR UPDATE` left
 * open), their clients retrying when answered late, had a dozen statements wait for that lock at
 * once and took the whole primary pool: the callbacks' commits failed. Now such a row holds two
 * connections for the statement timeout. The background retries (below) take the same turns.
 *
 * The redactions after them wait for a turn for up to REDACTION_TURN_WAIT_MS, well past their
 * caller's answer (pass-through.routes.ts STORE_TIMEOUT_MS): SignalWire has already forgotten
 * the text, and an app purging its messages sends hundreds of deletions at once — with a short
 * wait most of a burst of 500 was given up and kept its text here. Waiting costs a closure, not
 * a connection; only a store that stays held or down for the whole wait gives one up.
 */
const REDACTION_TURN_WAIT_MS = 60_000;
export const inRedactionTurn = poolTurns({
  atOnce: 2,
  maxWaitMs: REDACTION_TURN_WAIT_MS,
  what: 'a redaction',
});

/**
 * One redaction, in a turn: the message's text (src/messages/redaction.ts), then its relays'
 * (src/relay/relay-redaction.ts) — those only when the message's own was in scope. Idempotent:
 * a retry of one already done changes nothing.
 */
export async function forgetRedacted(
  db: Db,
  messageId: string,
  scope: RedactionScope,
): Promise<void> {
  await inRedactionTurn(db, async () => {
    if (await forgetMessageText(db, messageId, scope)) await forgetRelayedText(db, messageId);
  });
}

export interface RedactionRetryTimings {
  /** The first retry's delay; each next one waits twice as long, up to maxDelayMs. */
  firstDelayMs: number;
  maxDelayMs: number;
  /** After this long from the first failure, the redaction is given up (logged at error). */
  giveUpAfterMs: number;
  /** Redactions waiting for a retry at once; one more is dropped (logged at error). */
  maxPending: number;
}

export const REDACTION_RETRY_TIMINGS: RedactionRetryTimings = {
  firstDelayMs: 1_000,
  maxDelayMs: 60_000,
  giveUpAfterMs: 15 * 60_000,
  maxPending: 1_000,
};

/** How long stop() waits for the attempts under way (each one's statements are bounded). */
const STOP_WAIT_MS = 5_000;

export interface RedactionRetries {
  /**
   * Retries this message's redaction in the background until it is done, given up or stop()
   * is called. One pending retry per message: a second call while one waits changes nothing.
   */
  retry(messageId: string, scope: RedactionScope, log?: Record<string, unknown>): void;
  /** Redactions waiting for a retry (or being retried). */
  pending(): number;
  /**
   * No more attempts: what is still pending keeps its text here (said at error level, with the
   * message ids). Waits a little for an attempt under way.
   */
  stop(): Promise<void>;
}

/**
 * Redactions the store could not apply when they were asked (the message's row held past the
 * statement timeout by another session, a failover, a short outage): SignalWire has forgotten
 * the text already, and the app was told so. Each is retried in redaction turns — a held row
 * still never takes more than the turns' connections — 1 s later, then twice as long each time
 * up to a minute, for 15 minutes from its first failure; then it is given up, logged once at
 * error level with the message id (never the text).
 *
 * Kept in this process's memory only: a pod stopping meanwhile (main.ts stops the retries when
 * the listeners have closed) leaves those texts here, as one that exhausts the 15 minutes does;
 * the operator repeats the deletion or redaction (README).
 */
export function createRedactionRetries({
  db,
  logger,
  timings = REDACTION_RETRY_TIMINGS,
  attempt = forgetRedacted,
}: {
  db: Db;
  logger: Logger;
  timings?: Partial<RedactionRetryTimings>;
  /** The redaction tried (forgetRedacted); tests replace it. */
  attempt?: (db: Db, messageId: string, scope: RedactionScope) => Promise<void>;
}): RedactionRetries {
  const { firstDelayMs, maxDelayMs, giveUpAfterMs, maxPending } = {
    ...REDACTION_RETRY_TIMINGS,
    ...timings,
  };
  interface Pending {
    scope: RedactionScope;
    log: Record<string, unknown>;
    /**
     * When the first try failed, on the monotonic clock: a wall clock stepped forward (a VM
     * resumed after migration, NTP correcting a slow clock) gave a retry up at its next failure,
     * and the text SignalWire deleted stayed here.
     */
    since: number;
    delayMs: number;
    attempts: number;
    timer?: NodeJS.Timeout;
    running?: Promise<void>;
  }
  const pending = new Map<string, Pending>();
  let stopped = false;

  const schedule = (messageId: string, entry: Pending): void => {
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      entry.running = run(messageId, entry).finally(() => {
        entry.running = undefined;
      });
    }, entry.delayMs);
    // A pending retry does not keep the process alive on its own.
    entry.timer.unref();
  };

  const run = async (messageId: string, entry: Pending): Promise<void> => {
    if (stopped) return;
    entry.attempts += 1;
    try {
      await attempt(db, messageId, entry.scope);
      pending.delete(messageId);
      logger.info(
        { ...entry.log, message_id: messageId, attempts: entry.attempts },
        'a redaction the store could not apply at first is done',
      );
      return;
    } catch (err) {
      if (stopped) return;
      const nextDelayMs = Math.min(entry.delayMs * 2, maxDelayMs);
      if (performance.now() - entry.since + nextDelayMs > giveUpAfterMs) {
        pending.delete(messageId);
        logger.error(
          { ...entry.log, err, message_id: messageId, attempts: entry.attempts },
          'a message redacted or deleted at SignalWire keeps its text here: the store did not ' +
            'do it in the retries, given up (repeat the deletion or redaction)',
        );
        return;
      }
      entry.delayMs = nextDelayMs;
      schedule(messageId, entry);
    }
  };

  return {
    retry(messageId, scope, log = {}) {
      if (pending.has(messageId)) return;
      if (stopped) {
        // A redaction that was still under way when the retries stopped (shutdown): stop() could
        // not name it, so it is named here.
        logger.error(
          { ...log, message_id: messageId },
          'stopping: a message redacted or deleted at SignalWire keeps its text here, its ' +
            'redaction not done (repeat the deletion or redaction)',
        );
        return;
      }
      if (pending.size >= maxPending) {
        logger.error(
          { ...log, message_id: messageId, pending: pending.size },
          'a message redacted or deleted at SignalWire keeps its text here: too many ' +
            'redactions wait for a retry already (repeat the deletion or redaction)',
        );
        return;
      }
      const entry: Pending = {
        scope,
        log,
        since: performance.now(),
        delayMs: Math.min(firstDelayMs, maxDelayMs),
        attempts: 0,
      };
      pending.set(messageId, entry);
      schedule(messageId, entry);
    },
    pending: () => pending.size,
    async stop() {
      if (stopped) return;
      stopped = true;
      const running: Promise<void>[] = [];
      for (const entry of pending.values()) {
        clearTimeout(entry.timer);
        if (entry.running) running.push(entry.running);
      }
      if (pending.size > 0) {
        logger.error(
          { message_ids: [...pending.keys()], count: pending.size },
          'stopping: messages redacted or deleted at SignalWire keep their text here, their ' +
            'redaction still waiting for a retry (repeat the deletions or redactions)',
        );
      }
      pending.clear();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(running),
        new Promise((resolve) => {
          timer = setTimeout(resolve, STOP_WAIT_MS);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
    },
  };
}
