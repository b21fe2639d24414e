import type { Db } from '../db/database';
import { errorCode } from '../db/failure-reason';
import { classifyWriteFailure, isRefusedData, sqlState } from '../db/write-failure';
import type { Logger } from '../logger';
import type { RecordOptions, RecordOutcome, recordEvents } from '../messages/record-events';
import type { StatusEvent } from '../messages/status-event';
import { isLackOfSpace } from './spool-files';

/**
 * Writing spooled events into PostgreSQL. Every spooled event was acknowledged to SignalWire,
 * which will never send it again, so a failed write is never a reason to drop one:
 * - PostgreSQL unreachable: the error goes up; the caller waits for the database and replays
 *   the same events again (the spool keeps them until they are committed);
 * - a lock held elsewhere on an event's message (55P03 after our lock_timeout): the event and
 *   that message's later events are deferred to the next pass over the spool (order is kept
 *   per message), and the other messages' events go on (startPass);
 * - another transient failure (statement timeout, deadlock, serialization failure, …): the
 *   same events are tried again with exponential backoff, for as long as it takes; a chunk
 *   that keeps failing is tried one event at a time, and the events that still fail are tried
 *   again after the other messages' (each with its message's later events, kept in order);
 * - an event PostgreSQL refuses for good (its data: classes 22/23), or that our own code fails
 *   on three times: it goes to the dead-letter file, visible and requeued by command once the
 *   cause is fixed; its neighbours are stored.
 * An event the write itself refuses (an outcome other than recorded/duplicate, e.g. a token
 * bound to another send) is counted and logged: that is the answer, not a failure.
 */
export interface ReplayWriterOptions {
  db: Db;
  logger: Logger;
  write: typeof recordEvents;
  recordOptions?: RecordOptions;
  deadLetter(event: StatusEvent, reason: string): Promise<void>;
  /**
   * Told about every replayed event the write refused (e.g. `refused_token`: its token is bound
   * to another send), so refusals at replay are as visible as refusals of live callbacks.
   */
  onRefused?: (outcome: Exclude<RecordOutcome, 'recorded' | 'duplicate'>) => void;
  /** Aborts a backoff wait (shutdown): the events stay in the spool. */
  signal?: AbortSignal;
  /** First backoff delay; doubles up to `maxBackoffMs` (default 100 ms → 30 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface ReplayCounts {
  /** Events written (or found already stored). */
  replayed: number;
  recorded: number;
  duplicates: number;
  /** Events the write answered with a refusal of its own (not stored, not dead-lettered). */
  refused: number;
  deadLettered: number;
  /** Attempts that failed transiently and were tried again. */
  retries: number;
}

export interface ReplayWriter {
  /**
   * Writes one chunk; resolves once every event is stored, refused, dead-lettered or deferred
   * (its message's row locked elsewhere: see startPass), with the deferred ones' indices.
   */
  commit(events: readonly StatusEvent[]): Promise<number[]>;
  /**
   * Begins a pass over the spool. Order is kept per message, not across the spool: an event
   * whose message's row another session holds locked (55P03, after our lock_timeout) is
   * deferred, and so is every later event of that message in the same pass, while other
   * messages' events go on. The spool keeps what holds a deferred event for the next pass.
   */
  startPass(): void;
  /** Events deferred since the pass began. */
  deferredInPass(): number;
  /**
   * The writer's backoff before its `attempt`-th retry (without jitter): doubling from
   * initialBackoffMs up to maxBackoffMs. Passes that deferred events wait this long too.
   */
  backoffCeiling(attempt: number): number;
  readonly counts: ReplayCounts;
  /**
   * The last transient failure's SQLSTATE (or message) while it is being retried, or 55P03
   * while events wait for a locked message (ENOSPC or EDQUOT: for room for a dead letter);
   * else null.
   */
  retrying(): string | null;
}

// A chunk failing transiently this often is tried event by event.
const CHUNK_ATTEMPTS = 2;
// A codeless error (our own code failing on the event) this often is a dead letter.
const CODE_FAILURE_ATTEMPTS = 3;
// lock_not_available: our lock_timeout (db/kysely-pool.ts) ended a wait for a row or table
// another session holds.
const LOCKED = '55P03';

export function createReplayWriter(options: ReplayWriterOptions): ReplayWriter {
  const { db, logger, write, signal } = options;
  const recordOptions = options.recordOptions ?? {};
  const initialBackoffMs = options.initialBackoffMs ?? 100;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  const counts: ReplayCounts = {
    replayed: 0,
    recorded: 0,
    duplicates: 0,
    refused: 0,
    deadLettered: 0,
    retries: 0,
  };
  let retryingWith: string | null = null;
  // Messages whose events wait for the next pass (startPass), and whether the last pass had any.
  let blocked = new Set<string>();
  let blockedLastPass = false;
  // Why the last event was deferred: a locked message (55P03), or no room for a dead letter.
  let blockedBy = LOCKED;
  let deferred = 0;
  // The chunk being committed: where each of its events (as written) stands in it, and the
  // places of those deferred.
  let positions = new Map<StatusEvent, number>();
  let deferredHere: number[] = [];

  /**
   * Keeps `event` for the next pass, and its message's later events with it: its message is
   * locked elsewhere, or (`noRoom`, the dead-letter file's write error) it is a dead letter the
   * full spool volume has no room for.
   */
  function defer(event: StatusEvent, error?: unknown, noRoom?: unknown): void {
    deferred++;
    deferredHere.push(positions.get(event)!);
    // A write that failed and will be tried again (at the next pass), as the metric counts.
    if (error !== undefined) counts.retries++;
    // Why its message is blocked; an event deferred behind it (no cause of its own) keeps that.
    if (noRoom !== undefined) blockedBy = errorCode(noRoom) ?? 'ENOSPC';
    else if (error !== undefined) blockedBy = LOCKED;
    if (blocked.has(event.messageId)) return;
    blocked.add(event.messageId);
    logger.warn(
      { err: noRoom ?? error, message_id: event.messageId },
      noRoom === undefined
        ? 'replayed event waits for a lock on its message: kept for the next pass, the others go on'
        : 'replayed event cannot be stored, and the spool volume has no room for its dead letter: ' +
            "kept for the next pass, the others go on (their segments' removal frees room)",
    );
  }

  const isLocked = (error: unknown): boolean => sqlState(error) === LOCKED;

  function tally(events: readonly StatusEvent[], outcomes: readonly RecordOutcome[]): void {
    events.forEach((event, index) => {
      const outcome: string = outcomes[index] ?? 'recorded';
      counts.replayed++;
      if (outcome === 'recorded') counts.recorded++;
      else if (outcome === 'duplicate') counts.duplicates++;
      else {
        counts.refused++;
        options.onRefused?.(outcome as Exclude<RecordOutcome, 'recorded' | 'duplicate'>);
        logger.warn({ message_id: event.messageId, outcome }, 'replayed event refused');
      }
    });
  }

  function backoffCeiling(attempt: number): number {
    return doublingBackoff(attempt, initialBackoffMs, maxBackoffMs);
  }

  async function backoff(attempt: number, error: unknown): Promise<void> {
    counts.retries++;
    retryingWith = sqlState(error) ?? (error instanceof Error ? error.message : String(error));
    const ceiling = backoffCeiling(attempt);
    // Full jitter: replicas replaying after the same outage do not retry in step.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    logger.warn(
      { err: error, attempt, retry_in_ms: Math.round(delay) },
      'replay write failed transiently: retrying',
    );
    await sleep(delay, signal);
  }

  /**
   * Each event in its own transaction; those failing transiently are tried again, after a
   * backoff, once the other messages' are through (their order among themselves kept). A
   * message's later events wait behind its failed one, untried: stored before it, they would
   * put its history out of arrival order (the retry commits it after them).
   */
  async function commitEach(events: readonly StatusEvent[]): Promise<void> {
    const codeFailures = new Map<StatusEvent, number>();
    let pending = events;
    for (let attempt = 1; pending.length > 0; attempt++) {
      const again: StatusEvent[] = [];
      // Messages with an event in `again`: their later events join it.
      const waiting = new Set<string>();
      let lastError: unknown;
      for (const event of pending) {
        if (blocked.has(event.messageId)) {
          defer(event);
          continue;
        }
        if (waiting.has(event.messageId)) {
          again.push(event);
          continue;
        }
        try {
          tally([event], await write(db, [event], recordOptions));
          continue;
        } catch (error) {
          const failure = classifyWriteFailure(error);
          if (failure === 'unavailable') throw error;
          if (isLocked(error)) {
            defer(event, error);
            continue;
          }
          const failures = (codeFailures.get(event) ?? 0) + (failure === 'event' ? 1 : 0);
          codeFailures.set(event, failures);
          if (failure === 'event' && (isRefusedData(error) || failures >= CODE_FAILURE_ATTEMPTS)) {
            const noRoom = await deadLetter(event, error);
            if (noRoom !== undefined) defer(event, error, noRoom);
            continue;
          }
          again.push(event);
          waiting.add(event.messageId);
          lastError = error;
        }
      }
      if (again.length > 0) await backoff(attempt, lastError);
      pending = again;
    }
  }

  /**
   * Keeps `event` in the dead-letter file; returns the write's error when the spool's volume
   * has no room for it. A full volume — an outage long enough to fill it — must not stop the
   * replay at the first dead letter: every pass stopped there again, no segment was removed, no
   * room ever came back, and every callback was refused (503) with the database up. Instead the
   * event waits in its segment (deferred) while the later segments are stored and removed.
   */
  async function deadLetter(event: StatusEvent, error: unknown): Promise<unknown> {
    const message = error instanceof Error ? error.message : String(error);
    const code = sqlState(error);
    try {
      await options.deadLetter(event, code ? `${code} ${message}` : message);
    } catch (writeError) {
      if (isLackOfSpace(writeError)) return writeError;
      throw writeError;
    }
    logger.error(
      { err: error, message_id: event.messageId },
      'replayed event cannot be stored: dead-lettered',
    );
    counts.deadLettered++;
    return undefined;
  }

  return {
    counts,
    retrying: () => retryingWith ?? (blocked.size > 0 || blockedLastPass ? blockedBy : null),
    startPass() {
      blockedLastPass = blocked.size > 0;
      blocked = new Set();
      deferred = 0;
    },
    deferredInPass: () => deferred,
    backoffCeiling,
    async commit(chunk) {
      positions = new Map();
      deferredHere = [];
      // A replayed callback is stored with source `replay`: acknowledged during an outage and
      // committed later, which explains why its seq comes after events received later. Other
      // sources keep theirs. The dedupe key leaves out the source, so a replay never
      // duplicates a row that did make it in.
      const events: StatusEvent[] = [];
      chunk.forEach((original, position) => {
        const event: StatusEvent =
          original.source === 'callback' ? { ...original, source: 'replay' } : original;
        positions.set(event, position);
        if (blocked.has(event.messageId)) defer(event);
        else events.push(event);
      });
      try {
        for (let attempt = 1; events.length > 0; attempt++) {
          try {
            tally(events, await write(db, events, recordOptions));
            return deferredHere;
          } catch (error) {
            const failure = classifyWriteFailure(error);
            if (failure === 'unavailable') throw error;
            if (isLocked(error) && events.length === 1) {
              defer(events[0]!, error);
              return deferredHere;
            }
            // A lock is most likely one message's: find it event by event at once.
            if (failure === 'event' || isLocked(error) || attempt >= CHUNK_ATTEMPTS) break;
            if (events.length === 1) break;
            await backoff(attempt, error);
          }
        }
        await commitEach(events);
      } finally {
        retryingWith = null;
      }
      return deferredHere;
    },
  };
}

/** The wait before the `attempt`-th retry (from 1): `firstMs`, doubling up to `maxMs`. */
export function doublingBackoff(attempt: number, firstMs: number, maxMs: number): number {
  return Math.min(maxMs, firstMs * 2 ** Math.min(attempt - 1, 20));
}

/** Resolves after `ms`, or rejects at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
