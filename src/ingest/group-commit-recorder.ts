import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { AppError } from '../errors';
import { unavailable } from '../errors';
import type { Logger } from '../logger';
import type { EventRecorder } from '../messages/event-recorder';
import { recordEvents } from '../messages/record-events';
import type { RecordOptions, RecordOutcome } from '../messages/record-events';
import type { StatusEvent } from '../messages/status-event';
import { isDatabaseUnavailable } from './database-unavailable';
import type { Spool } from './spool';

/**
 * Group commit: callbacks arriving together are recorded in one transaction, and each is
 * acknowledged when its batch has committed. One commit per callback (a WAL flush each) is
 * the ceiling of a naive receiver; a batch pays one flush for up to `batchMax` events.
 *
 * A batch closes when it holds `batchMax` events or its oldest event has waited
 * `batchWaitMs` — or at once when nothing is committing; at most `maxInFlight` batches
 * commit at once (each holds a pool connection). Events waiting or committing are bounded by `queueMax`: past it, `record`
 * refuses at once with a 503 and Retry-After instead of growing memory until SignalWire's
 * 5 s timeout fires anyway.
 *
 * While PostgreSQL is unreachable, batches go to the spool instead (acknowledged once
 * fsync'd); a probe notices its return and the spool is replayed in arrival order. Until
 * the spool is empty new batches keep going to the spool, so replayed events never land
 * after events that arrived later.
 */
export interface GroupCommitOptions {
  db: Db;
  logger: Logger;
  batchMax: number;
  batchWaitMs: number;
  queueMax: number;
  maxInFlight: number;
  /** Without a spool, events that cannot be committed are refused with a 503. */
  spool?: Spool;
  /** Passed to every recordEvents call (metrics observe status transitions). */
  recordOptions?: RecordOptions;
  /** How often an unreachable database is probed. */
  probeIntervalMs?: number;
  /** Events per replay transaction. */
  replayChunk?: number;
  /**
   * A batch not committed within this time is treated like an outage (spooled, when there is
   * a spool): SignalWire gives up on a callback after 5 s. The late commit, if it lands,
   * makes the replay a no-op for those events.
   */
  commitTimeoutMs?: number;
  /** The transactional write; a test can substitute one that fails on purpose. */
  write?: typeof recordEvents;
}

export type IngestMode = 'direct' | 'spooling' | 'replaying';

export interface IngestStats {
  /** Transactions committed by the group path (one per batch, plus one-by-one fallbacks). */
  transactions: number;
  /** Batches started. */
  batches: number;
  /** Events committed straight to PostgreSQL. */
  committed: number;
  /** Time spent in batch transactions, in ms (with `transactions`: the mean commit time). */
  commitMillis: number;
  /** Batches that failed for a reason of their own and were retried one event at a time. */
  fallbacks: number;
  /** Events acknowledged after the spool's fsync. */
  spooled: number;
  /** Events replayed from the spool into PostgreSQL. */
  replayed: number;
  /** Replayed events refused because their callback token belongs to another send. */
  replayRefusedTokens: number;
  /** Events refused because the queue was full. */
  refusedFull: number;
  queued: number;
  inFlight: number;
}

export interface IngestStatus {
  database: 'ok' | 'unreachable';
  spool: {
    state: 'idle' | 'spooling' | 'replaying' | 'failing' | 'disabled';
    depth: number;
  };
}

export interface GroupCommitRecorder extends EventRecorder {
  /** Replays what an earlier process left in the spool (at start-up). */
  start(): void;
  stats(): IngestStats;
  /** For readiness and metrics. */
  status(): IngestStatus;
  mode(): IngestMode;
}

interface Pending {
  event: StatusEvent;
  resolve: (outcome: RecordOutcome) => void;
  reject: (error: unknown) => void;
}

export function createGroupCommitRecorder(options: GroupCommitOptions): GroupCommitRecorder {
  const { db, logger, spool, batchMax, batchWaitMs, queueMax, maxInFlight } = options;
  const write = options.write ?? recordEvents;
  const recordOptions = options.recordOptions ?? {};
  const probeIntervalMs = options.probeIntervalMs ?? 1_000;
  const replayChunk = options.replayChunk ?? 500;
  const commitTimeoutMs = options.commitTimeoutMs ?? 3_000;

  const stats: IngestStats = {
    transactions: 0,
    batches: 0,
    committed: 0,
    commitMillis: 0,
    fallbacks: 0,
    spooled: 0,
    replayed: 0,
    replayRefusedTokens: 0,
    refusedFull: 0,
    queued: 0,
    inFlight: 0,
  };
  let queue: Pending[] = [];
  let oldestQueuedAt = 0;
  let held = 0; // queued + committing: what queueMax bounds
  let inFlight = 0;
  let waitTimer: NodeJS.Timeout | null = null;
  let mode: IngestMode = 'direct';
  let probeTimer: NodeJS.Timeout | null = null;
  let replaying: Promise<void> | null = null;
  let closed = false;
  let idleWaiters: Array<() => void> = [];

  function schedule(): void {
    // With nothing committing, waiting would only add latency: the events arriving meanwhile
    // batch up behind this commit anyway (PostgreSQL's commit_delay likewise waits only when
    // other transactions are active).
    while (
      inFlight < maxInFlight &&
      queue.length > 0 &&
      (closed ||
        inFlight === 0 ||
        queue.length >= batchMax ||
        performance.now() - oldestQueuedAt >= batchWaitMs)
    ) {
      startBatch();
    }
    if (queue.length > 0 && waitTimer === null && inFlight < maxInFlight) {
      const remaining = Math.max(0, batchWaitMs - (performance.now() - oldestQueuedAt));
      waitTimer = setTimeout(() => {
        waitTimer = null;
        schedule();
      }, remaining);
    }
    if (queue.length === 0 && inFlight === 0 && idleWaiters.length > 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  function startBatch(): void {
    if (waitTimer !== null) {
      clearTimeout(waitTimer);
      waitTimer = null;
    }
    const batch = queue.length <= batchMax ? queue : queue.slice(0, batchMax);
    queue = queue.length <= batchMax ? [] : queue.slice(batchMax);
    inFlight++;
    stats.batches++;
    commitBatch(batch)
      .catch((error: unknown) => {
        // commitBatch settles every event itself; reaching here is a bug, not an outage.
        logger.error({ err: error }, 'group commit failed unexpectedly');
        for (const pending of batch) pending.reject(error);
      })
      .finally(() => {
        inFlight--;
        held -= batch.length;
        schedule();
      });
  }

  async function commitBatch(batch: Pending[]): Promise<void> {
    if (mode !== 'direct' && spool) return spoolEntries(batch);
    let outcomes: RecordOutcome[];
    const began = performance.now();
    try {
      outcomes = await withTimeout(
        write(
          db,
          batch.map((pending) => pending.event),
          recordOptions,
        ),
        commitTimeoutMs,
      );
    } catch (error) {
      if (isDatabaseUnavailable(error)) return unreachable(batch, error);
      return commitOneByOne(batch, error);
    }
    stats.transactions++;
    stats.committed += batch.length;
    stats.commitMillis += performance.now() - began;
    batch.forEach((pending, index) => pending.resolve(outcomes[index]!));
  }

  /** One poisoned event must not fail its neighbours: retry each in its own transaction. */
  async function commitOneByOne(batch: Pending[], cause: unknown): Promise<void> {
    stats.fallbacks++;
    logger.warn(
      { err: cause, events: batch.length },
      'batch failed: recording its events one by one',
    );
    for (let index = 0; index < batch.length; index++) {
      const pending = batch[index]!;
      try {
        const [outcome] = await withTimeout(
          write(db, [pending.event], recordOptions),
          commitTimeoutMs,
        );
        stats.transactions++;
        stats.committed++;
        pending.resolve(outcome!);
      } catch (error) {
        if (isDatabaseUnavailable(error)) return unreachable(batch.slice(index), error);
        logger.error(
          { err: error, message_id: pending.event.messageId },
          'event refused by the database',
        );
        pending.reject(error);
      }
    }
  }

  async function unreachable(batch: Pending[], error: unknown): Promise<void> {
    if (!spool) {
      for (const pending of batch) pending.reject(unavailableError());
      return;
    }
    enterSpooling(error);
    return spoolEntries(batch);
  }

  async function spoolEntries(batch: Pending[]): Promise<void> {
    try {
      await spool!.append(batch.map((pending) => pending.event));
    } catch {
      // The spool logged why; neither PostgreSQL nor the disk can keep the event.
      for (const pending of batch) pending.reject(unavailableError());
      return;
    }
    stats.spooled += batch.length;
    // Whether it duplicates a stored event is only known at replay; it is durable either way.
    for (const pending of batch) pending.resolve('recorded');
  }

  function enterSpooling(error: unknown): void {
    if (mode === 'direct') {
      logger.error({ err: error }, 'database unreachable: spooling accepted callbacks to disk');
    }
    mode = 'spooling';
    scheduleProbe();
  }

  function scheduleProbe(): void {
    if (probeTimer !== null || closed) return;
    probeTimer = setTimeout(() => {
      probeTimer = null;
      void probe();
    }, probeIntervalMs);
    // Only pending requests keep a process alive, never a probe.
    probeTimer.unref();
  }

  async function probe(): Promise<void> {
    if (closed || mode !== 'spooling') return;
    try {
      await withTimeout(sql`select 1`.execute(db), commitTimeoutMs);
    } catch {
      scheduleProbe();
      return;
    }
    if (closed) return;
    logger.info({ depth: spool?.depth() }, 'database reachable again: replaying the spool');
    startReplay();
  }

  function startReplay(): void {
    if (!spool || replaying) return;
    mode = 'replaying';
    replaying = (async () => {
      try {
        while (!spool.isEmpty() && !closed) await spool.replay(commitReplayed, replayChunk);
        if (spool.isEmpty()) {
          // Synchronous with the emptiness check: no append can slip in between.
          mode = 'direct';
          logger.info(
            { replayed: stats.replayed },
            'spool replayed: writing to the database again',
          );
        }
      } catch (error) {
        logger.error({ err: error }, 'spool replay stopped; retrying after the next probe');
        mode = 'spooling';
        scheduleProbe();
      } finally {
        replaying = null;
      }
    })();
  }

  /**
   * A replayed callback is stored with source `replay`: it was acknowledged while the
   * database was unreachable and committed later, which explains why its seq comes after
   * events received later. Other sources (proxy, reconcile) keep theirs. The dedupe key does
   * not include the source, so a replay never duplicates a row that did make it in.
   */
  async function commitReplayed(events: StatusEvent[]): Promise<void> {
    const replayed = events.map((event) =>
      event.source === 'callback' ? { ...event, source: 'replay' as const } : event,
    );
    const refused: StatusEvent[] = [];
    try {
      const outcomes = await write(db, replayed, recordOptions);
      outcomes.forEach((outcome, index) => {
        if (outcome === 'refused_token') refused.push(replayed[index]!);
      });
    } catch (error) {
      if (isDatabaseUnavailable(error)) throw error;
      for (const event of replayed) {
        try {
          const [outcome] = await write(db, [event], recordOptions);
          if (outcome === 'refused_token') refused.push(event);
        } catch (single) {
          if (isDatabaseUnavailable(single)) throw single;
          logger.error(
            { err: single, message_id: event.messageId },
            'replayed event refused: dead-lettered',
          );
          await spool!.deadLetter(event, single instanceof Error ? single.message : String(single));
        }
      }
    }
    // Acknowledged while the database was down, checked now like a live callback: a token
    // of another send is refused (not stored, and not a dead letter: it is not ours to keep).
    for (const event of refused) {
      stats.replayRefusedTokens++;
      logger.warn(
        { message_id: event.messageId, reason: 'token_mismatch' },
        'replayed callback refused: its token belongs to another send',
      );
    }
    stats.replayed += events.length;
  }

  return {
    record(event) {
      if (closed)
        return Promise.reject(unavailable('The service is shutting down; retry later', 1));
      if (held >= queueMax) {
        stats.refusedFull++;
        return Promise.reject(
          unavailable('Too many callbacks waiting to be stored; retry later', 1),
        );
      }
      held++;
      return new Promise<RecordOutcome>((resolve, reject) => {
        if (queue.length === 0) oldestQueuedAt = performance.now();
        queue.push({ event, resolve, reject });
        schedule();
      });
    },
    async drain() {
      closed = true;
      if (probeTimer !== null) {
        clearTimeout(probeTimer);
        probeTimer = null;
      }
      await new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        schedule();
      });
      await replaying;
      await spool?.close();
      logger.info({ ingest: { ...stats, queued: queue.length, inFlight } }, 'ingest drained');
    },
    start() {
      if (spool && !spool.isEmpty()) startReplay();
    },
    stats: () => ({ ...stats, queued: queue.length, inFlight }),
    mode: () => mode,
    status() {
      let state: IngestStatus['spool']['state'] = 'disabled';
      if (spool) state = spool.failing() ? 'failing' : mode === 'direct' ? 'idle' : mode;
      return {
        database: mode === 'spooling' ? 'unreachable' : 'ok',
        spool: { state, depth: spool?.depth() ?? 0 },
      };
    },
  };
}

function unavailableError(): AppError {
  return unavailable('The event could not be stored; retry later', 2);
}

/** A late write is treated like a lost connection (ETIMEDOUT): it may still commit later. */
function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () =>
        reject(Object.assign(new Error(`not committed within ${ms} ms`), { code: 'ETIMEDOUT' })),
      ms,
    );
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
