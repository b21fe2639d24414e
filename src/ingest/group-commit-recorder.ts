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
import { isDatabaseUnavailable } from '../db/database-unavailable';
import { describeDatabaseFailure, errorCode, reportedSqlState } from '../db/failure-reason';
import { STANDBY_STALL, commitsWaitingForStandby } from '../db/standby-stall';
import { classifyWriteFailure } from '../db/write-failure';
import { timedOut, withTimeout } from '../db/with-timeout';
import { approximateEventBytes } from './event-size';
import { createReplayWriter, doublingBackoff, sleep } from './replay';
import { withoutStoredText } from './spool-texts';
import type { ReplayCounts, ReplayWriterOptions } from './replay';
import { isSpoolDiskFailure } from './spool';
import type { Spool } from './spool';

/**
 * Group commit: callbacks arriving together are recorded in one transaction, and each is
 * acknowledged when its batch has committed. One commit per callback (a WAL flush each) is
 * the ceiling of a naive receiver; a batch pays one flush for up to `batchMax` events.
 *
 * A batch closes when it holds `batchMax` events or its oldest event has waited
 * `batchWaitMs` — or at once when nothing is committing; at most `maxInFlight` batches
 * commit at once (each holds a pool connection), those sharing a message one after the other
 * (earlierSharingAMessage). Events waiting or committing are bounded by
 * `queueMax` in count and `queueMaxBytes` in size (approximateEventBytes): past either,
 * `record` refuses at once with a 503 and Retry-After instead of growing memory until
 * SignalWire's 5 s timeout fires anyway.
 *
 * While PostgreSQL is unreachable, batches go to the spool instead (acknowledged once
 * fsync'd); a probe notices its return and the spool is replayed in arrival order (replay.ts:
 * transient failures are retried, only events that can never be stored are dead-lettered).
 * Until the spool is empty new batches keep going to the spool, so replayed events never land
 * after events that arrived later. Under steady traffic it is never empty at the end of a pass
 * (callbacks arrive during each): once a pass leaves only a short tail, new batches wait for a
 * last pass instead of joining the spool (catching up, startReplay).
 */
export interface GroupCommitOptions {
  db: Db;
  logger: Logger;
  batchMax: number;
  batchWaitMs: number;
  queueMax: number;
  /** Bytes of callback data waiting or committing (default: unbounded). */
  queueMaxBytes?: number;
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
  /**
   * A replay write not settled within this time is treated like an outage (the replay waits
   * for the database and tries again); no caller waits on it, so it is generous.
   */
  replayTimeoutMs?: number;
  /**
   * The longest a batch waits for the replay's last pass over a short tail (catching up)
   * before it is spooled behind it; never more than half of commitTimeoutMs.
   */
  catchUpWaitMs?: number;
  /** First and longest wait between retries of a replay write that failed transiently. */
  replayBackoffMs?: { initial: number; max: number };
  /**
   * Null when the database's schema is one this release may write to, else why not
   * (src/db/schema-version.ts schemaProblem). The spool is replayed only into a compatible
   * schema: during a rollout a new pod can start before the migration Job has run, and its
   * writes would fail (or worse, succeed half-way) on tables and columns that are not there yet.
   * Absent: not checked.
   */
  schemaProblem?: () => Promise<string | null>;
  /** Every replayed event the write refused (metrics: sw_status_spool_replay_refused_total). */
  onReplayRefused?: ReplayWriterOptions['onRefused'];
  /** The transactional write; a test can substitute one that fails on purpose. */
  write?: typeof recordEvents;
  /**
   * STORE_BODY of this run: false, replayed events lose the text an earlier run with it on
   * spooled (spool-texts.ts). Absent: replayed as spooled (tests; the service and the spool
   * command both pass the STORE_BODY they read).
   */
  storeBody?: boolean;
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
  /** Events of such a batch tried again after a transient failure (commitOneByOne). */
  fallbackRetries: number;
  /** Events acknowledged after the spool's fsync. */
  spooled: number;
  /** Events replayed from the spool into PostgreSQL. */
  replayed: number;
  /** Replayed events the write refused (not stored, not dead-lettered). */
  replayRefused: number;
  /** Replayed events PostgreSQL refuses for good, kept in the dead-letter file. */
  deadLettered: number;
  /** Replay writes that failed transiently and were tried again. */
  replayRetries: number;
  /** Events refused because the queue was full (in count or in bytes). */
  refusedFull: number;
  queued: number;
  inFlight: number;
}

export interface IngestStatus {
  database: 'ok' | 'unreachable';
  spool: {
    state: 'idle' | 'spooling' | 'replaying' | 'failing' | 'disabled';
    depth: number;
    /** Events that can never be stored as they are (see Spool.requeueDeadLetters). */
    dead_letters: number;
    /**
     * While the database refuses writes (25006: read-only), or a replay write is being retried
     * after a transient failure: its SQLSTATE.
     */
    retrying?: string;
    /** While the replay waits for a schema this release can write to: why it waits. */
    waiting_for_schema?: string;
  };
}

export interface DrainOptions {
  /**
   * Until when (performance.now(), not the wall clock: a step must not move it) a non-empty
   * spool keeps being replayed (waiting for the database if need be); what is left after it
   * stays on disk for the next process. Default: now.
   */
  deadline?: number;
  /** Ends the replay before the deadline (a second SIGTERM/SIGINT: stop now). */
  signal?: AbortSignal;
}

export interface GroupCommitRecorder extends EventRecorder {
  /** Replays what an earlier process left in the spool (at start-up). */
  start(): void;
  /** Stops taking events, commits or spools what is waiting, replays until the deadline. */
  drain(options?: DrainOptions): Promise<void>;
  stats(): IngestStats;
  /** For readiness and metrics. */
  status(): IngestStatus;
  mode(): IngestMode;
}

interface Pending {
  event: StatusEvent;
  bytes: number;
  resolve: (outcome: RecordOutcome) => void;
  reject: (error: unknown) => void;
}

/** A batch committing or spooling; `landed` resolves once it is through (startBatch). */
interface Flight {
  batch: readonly Pending[];
  landed: Promise<void>;
}

export function createGroupCommitRecorder(options: GroupCommitOptions): GroupCommitRecorder {
  const { db, logger, spool, batchMax, batchWaitMs, queueMax, maxInFlight } = options;
  const write = options.write ?? recordEvents;
  const recordOptions = options.recordOptions ?? {};
  const probeIntervalMs = options.probeIntervalMs ?? 1_000;
  const replayChunk = options.replayChunk ?? 500;
  const commitTimeoutMs = options.commitTimeoutMs ?? 3_000;
  // A short tail's one transaction takes milliseconds; waiting batches hold their commit
  // slots, so the queue grows meanwhile: a pass slower than this is no catch-up.
  const catchUpWaitMs = options.catchUpWaitMs ?? 250;
  const queueMaxBytes = options.queueMaxBytes ?? Number.POSITIVE_INFINITY;
  const replayTimeoutMs = options.replayTimeoutMs ?? 60_000;

  const stats: IngestStats = {
    transactions: 0,
    batches: 0,
    committed: 0,
    commitMillis: 0,
    fallbacks: 0,
    fallbackRetries: 0,
    spooled: 0,
    replayed: 0,
    replayRefused: 0,
    deadLettered: 0,
    replayRetries: 0,
    refusedFull: 0,
    queued: 0,
    inFlight: 0,
  };
  let queue: Pending[] = [];
  let oldestQueuedAt = 0;
  let held = 0; // queued + committing: what queueMax bounds
  let heldBytes = 0; // their approximate size: what queueMaxBytes bounds
  // The batches committing or spooling: a new batch waits for those sharing a message with it
  // (earlierSharingAMessage); its size is what maxInFlight bounds.
  const flights = new Set<Flight>();
  let waitTimer: NodeJS.Timeout | null = null;
  let mode: IngestMode = 'direct';
  let probeTimer: NodeJS.Timeout | null = null;
  let replaying: Promise<void> | null = null;
  // While set, the replay's last pass runs over a short tail and new batches wait for it
  // (catchUpOver) instead of joining the spool behind it; `end` lets them go on.
  let catchingUp: { over: Promise<void>; end: () => void } | null = null;
  let waitingForSchema: string | null = null;
  // Why the database cannot take writes, from entering the spool until the replay is through:
  // what the log said last, and the SQLSTATE /readyz shows when the server gave one (25006: it
  // is read-only, a standby after a failover) — "unreachable" alone would send an operator
  // looking for a network fault.
  let outage: { reason: string; sqlstate?: string } | null = null;
  // While the replay is stopped by the spool's own disk (isSpoolDiskFailure): its errno code.
  // The database answered meanwhile, so it is not reported unreachable for it.
  let replayDiskFailure: string | null = null;
  let closed = false;
  // Aborted when replaying must stop (the drain's deadline): backoff waits end at once.
  const stopReplaying = new AbortController();
  let idleWaiters: Array<() => void> = [];
  const replayWriter = spool
    ? createReplayWriter({
        db,
        logger,
        write: (database, events, writeOptions) =>
          withTimeout(
            write(
              database,
              options.storeBody === false ? events.map(withoutStoredText) : events,
              writeOptions,
            ),
            replayTimeoutMs,
            NOT_COMMITTED,
          ),
        recordOptions,
        deadLetter: (event, reason) => spool.deadLetter(event, reason),
        onRefused: options.onReplayRefused,
        signal: stopReplaying.signal,
        initialBackoffMs: options.replayBackoffMs?.initial,
        maxBackoffMs: options.replayBackoffMs?.max,
      })
    : undefined;

  function schedule(): void {
    // With nothing committing, waiting would only add latency: the events arriving meanwhile
    // batch up behind this commit anyway (PostgreSQL's commit_delay likewise waits only when
    // other transactions are active).
    while (
      flights.size < maxInFlight &&
      queue.length > 0 &&
      (closed ||
        flights.size === 0 ||
        queue.length >= batchMax ||
        performance.now() - oldestQueuedAt >= batchWaitMs)
    ) {
      startBatch();
    }
    if (queue.length > 0 && waitTimer === null && flights.size < maxInFlight) {
      const remaining = Math.max(0, batchWaitMs - (performance.now() - oldestQueuedAt));
      waitTimer = setTimeout(() => {
        waitTimer = null;
        schedule();
      }, remaining);
    }
    if (queue.length === 0 && flights.size === 0 && idleWaiters.length > 0) {
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
    stats.batches++;
    const earlier = earlierSharingAMessage(batch);
    const flight: Flight = {
      batch,
      landed: commitBatch(batch, earlier)
        .catch((error: unknown) => {
          // commitBatch settles every event itself; reaching here is a bug, not an outage.
          logger.error({ err: error }, 'group commit failed unexpectedly');
          for (const pending of batch) pending.reject(error);
        })
        .finally(() => {
          flights.delete(flight);
          held -= batch.length;
          for (const pending of batch) heldBytes -= pending.bytes;
          schedule();
        }),
    };
    flights.add(flight);
  }

  /** `earlier`: the batches this one waits for first (earlierSharingAMessage). */
  async function commitBatch(
    batch: Pending[],
    earlier: ReadonlyArray<Promise<void>>,
  ): Promise<void> {
    const deadline = performance.now() + commitTimeoutMs;
    if (earlier.length > 0) await Promise.all(earlier);
    // Spooled now, it would be one more arrival the replay's last pass must take, and the
    // replay would never end while callbacks keep coming. At most catchUpWaitMs, and never
    // more than half its commit timeout, leaving the other half for its write; past it,
    // spooled as before.
    if (mode !== 'direct' && catchingUp) {
      const catchUp = catchingUp;
      // A last pass this slow (a database just back, a lock, the replay writer's backoff) is
      // no short catch-up: the batches behind this one are spooled and acknowledged at once
      // again, rather than each waiting out its limit (and filling the queue).
      const until = Math.min(deadline - commitTimeoutMs / 2, performance.now() + catchUpWaitMs);
      if (!(await catchUpOver(catchUp, until)) && catchingUp === catchUp) endCatchUp();
    }
    if (mode !== 'direct' && spool) return spoolEntries(batch);
    let outcomes: RecordOutcome[];
    const began = performance.now();
    if (deadline <= began)
      return unreachable(batch, timedOut(`${NOT_COMMITTED} within the batch's commit timeout`));
    try {
      outcomes = await withTimeout(
        write(
          db,
          batch.map((pending) => pending.event),
          recordOptions,
        ),
        deadline - began,
        NOT_COMMITTED,
      );
    } catch (error) {
      if (isDatabaseUnavailable(error)) return unreachable(batch, error);
      return commitOneByOne(batch, error, deadline);
    }
    stats.transactions++;
    stats.committed += batch.length;
    stats.commitMillis += performance.now() - began;
    batch.forEach((pending, index) => pending.resolve(outcomes[index]!));
  }

  /**
   * The batches in flight, started before `batch`, with an event of one of its messages: it
   * waits until they are through (committed or spooled). A message's events then reach PostgreSQL, or the spool,
   * in arrival order: a batch left waiting (its message's row locked elsewhere, PostgreSQL not
   * answering) is spooled at its commit timeout, and a later batch written or spooled meanwhile
   * would get ahead of it — spooled, replayed first; written, committed first, possibly even
   * while the earlier one is spooled (its abandoned write given up at lock_timeout). Costs
   * nothing a commit would not wait for anyway: the later batch's transaction would wait for the
   * message's row, which the earlier one's holds until it ends. Within the batch's own commit
   * timeout (commitBatch's deadline), which the earlier batch's, started first, ends before.
   */
  function earlierSharingAMessage(batch: readonly Pending[]): Array<Promise<void>> {
    const earlier: Array<Promise<void>> = [];
    if (flights.size === 0) return earlier;
    const messages = new Set(batch.map((pending) => pending.event.messageId));
    for (const other of flights) {
      if (other.batch.some((pending) => messages.has(pending.event.messageId)))
        earlier.push(other.landed);
    }
    return earlier;
  }

  /**
   * One poisoned event must not fail its neighbours: retry each in its own transaction, within
   * what is left of the batch's commit timeout (`deadline`). An event PostgreSQL refuses for
   * its data (classifyWriteFailure: `event`) is refused alone. One that fails for the moment's
   * sake (`transient`: a deadlock, a lock or statement timeout the operator set on the role or
   * database, shorter than ours, while its row or table is locked, a migration not yet run) is
   * tried again after a short backoff, before the batch's later events, so its message's
   * history keeps arrival order. Answered 503 instead, it came back at most twice
   * (SignalWire's retries, within 15 s) and was lost if the lock outlasted them. Past the
   * deadline the event and the rest of the batch are treated like the outage it then is:
   * spooled, acknowledged, and replayed once the database takes them. Each event given a
   * commit timeout of its own, with a lock_timeout of 1 s the last of 40 callbacks was answered
   * after 41 s, a 503 long after SignalWire had given up, and none was spooled.
   */
  async function commitOneByOne(batch: Pending[], cause: unknown, deadline: number): Promise<void> {
    stats.fallbacks++;
    logger.warn(
      { err: cause, events: batch.length },
      'batch failed: recording its events one by one',
    );
    for (let index = 0; index < batch.length; index++) {
      const pending = batch[index]!;
      for (let attempt = 1; ; attempt++) {
        const remainingMs = deadline - performance.now();
        if (remainingMs <= 0)
          return unreachable(
            batch.slice(index),
            timedOut(`${NOT_COMMITTED} within the batch's commit timeout`),
          );
        try {
          const [outcome] = await withTimeout(
            write(db, [pending.event], recordOptions),
            remainingMs,
            NOT_COMMITTED,
          );
          stats.transactions++;
          stats.committed++;
          pending.resolve(outcome!);
          break;
        } catch (error) {
          const failure = classifyWriteFailure(error);
          if (failure === 'unavailable') return unreachable(batch.slice(index), error);
          if (failure === 'event') {
            logger.error(
              { err: error, message_id: pending.event.messageId },
              'event refused by the database',
            );
            pending.reject(error);
            break;
          }
          stats.fallbackRetries++;
          const delayMs = doublingBackoff(attempt, FALLBACK_RETRY_FIRST_MS, FALLBACK_RETRY_MAX_MS);
          logger.warn(
            { err: error, message_id: pending.event.messageId, attempt, retry_in_ms: delayMs },
            'event failed transiently: retrying it before the rest of its batch',
          );
          await sleep(Math.min(delayMs, Math.max(0, deadline - performance.now())));
        }
      }
    }
  }

  /**
   * Until the catch-up ends (back to direct, or not) or `until` (a performance.now() time);
   * whether it ended in time.
   */
  async function catchUpOver(catchUp: { over: Promise<void> }, until: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      catchUp.over.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), Math.max(0, until - performance.now()));
      }),
    ]);
    clearTimeout(timer);
    return ended;
  }

  function beginCatchUp(): void {
    let end!: () => void;
    const over = new Promise<void>((resolve) => {
      end = resolve;
    });
    catchingUp = { over, end };
  }

  /** The waiting batches go on: written if the mode is direct again, else spooled. */
  function endCatchUp(): void {
    catchingUp?.end();
    catchingUp = null;
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
    replayDiskFailure = null;
    if (mode === 'direct') {
      const { kind, reason, code } = describeDatabaseFailure(error);
      logger.error({ err: error, kind, code }, `${reason}: spooling accepted callbacks to disk`);
      noteOutage(error, reason);
    }
    mode = 'spooling';
    scheduleProbe();
  }

  function noteOutage(error: unknown, reason: string): void {
    const sqlstate = reportedSqlState(error);
    outage = { reason, ...(sqlstate && { sqlstate }) };
  }

  function scheduleProbe(): void {
    if (probeTimer !== null || stopReplaying.signal.aborted) return;
    probeTimer = setTimeout(() => {
      probeTimer = null;
      void probe();
    }, probeIntervalMs);
    // Only pending requests keep a process alive, never a probe.
    probeTimer.unref();
  }

  async function probe(): Promise<void> {
    if (stopReplaying.signal.aborted || mode !== 'spooling') return;
    try {
      await withTimeout(sql`select 1`.execute(db), commitTimeoutMs);
    } catch {
      replayDiskFailure = null; // the database is out as well: said so again
      scheduleProbe();
      return;
    }
    if (stopReplaying.signal.aborted) return;
    // An answer does not say that commits go through: a primary whose synchronous standby
    // stopped confirming answers at once and commits nothing (db/standby-stall.ts). A replay
    // then would only add one more connection stuck at its COMMIT per attempt, until the pool
    // is full, and log a network fault each time. Not known (a role that may not read
    // pg_stat_activity), or commits no longer waiting (the standby back, or an operator's
    // synchronous_commit = local, which leaves our abandoned commits waiting): the replay goes on.
    const waitingForStandby = await withTimeout(
      commitsWaitingForStandby(db, commitTimeoutMs),
      commitTimeoutMs,
    ).catch(() => 0);
    if (stopReplaying.signal.aborted) return;
    if (waitingForStandby > 0) {
      if (outage?.reason !== STANDBY_STALL) {
        logger.error(
          { waiting: waitingForStandby, depth: spool?.depth() },
          `${STANDBY_STALL}: spooling accepted callbacks to disk until it does`,
        );
      }
      replayDiskFailure = null;
      outage = { reason: STANDBY_STALL };
      scheduleProbe();
      return;
    }
    logger.info({ depth: spool?.depth() }, 'database reachable again: replaying the spool');
    startReplay();
  }

  function startReplay(): void {
    if (!spool || replaying) return;
    mode = 'replaying';
    replaying = (async () => {
      try {
        await untilSchemaCompatible();
        for (let waits = 0; !spool.isEmpty() && !stopReplaying.signal.aborted;) {
          replayWriter!.startPass();
          await spool.replay(commitReplayed, replayChunk);
          const deferred = replayWriter!.deferredInPass();
          if (catchingUp) {
            // A last pass that did not empty the spool (an append already under way, a batch
            // that waited past its limit, a requeue, deferred events): its waiting batches
            // are spooled, behind it, and the next short tail is caught up again. Emptied,
            // the loop ends and the mode is direct before they go on.
            if (!spool.isEmpty()) endCatchUp();
          } else if (deferred === 0 && spool.depth() < replayChunk) {
            // Callbacks arrived during the pass. A short tail (one chunk: one transaction) is
            // replayed once more while new batches wait; a long one in a pass like this one.
            // Not while events wait for a locked message: the pass after the backoff would
            // keep the batches waiting until their limit for nothing.
            beginCatchUp();
          }
          // Events kept for a locked message: the next pass tries them after a backoff, not
          // at once (each try waits out a lock_timeout on the same lock).
          if (deferred === 0) waits = 0;
          else await sleep(replayWriter!.backoffCeiling(++waits), stopReplaying.signal);
        }
        if (spool.isEmpty()) {
          // Synchronous with the emptiness check: no append can slip in between. The batches
          // waiting for the last pass arrived after everything it replayed: they are written.
          mode = 'direct';
          endCatchUp();
          outage = null;
          replayDiskFailure = null;
          logger.info(
            { replayed: currentStats().replayed },
            'spool replayed: writing to the database again',
          );
        }
      } catch (error) {
        if (stopReplaying.signal.aborted) {
          mode = 'spooling';
          return;
        }
        if (isSpoolDiskFailure(error)) {
          // The spool's own disk (a dead letter refused by a full disk, a segment that cannot
          // be removed), not the database: said so, once per cause; new callbacks keep joining
          // the spool behind the replayed ones and the next probe tries the replay again.
          const code = errorCode(error);
          const cause = code ?? 'error';
          if (cause !== replayDiskFailure) {
            logger.error(
              { err: error, dir: spool.dir, code },
              'spool replay stopped: the spool disk failed (not the database); retrying after the next probe',
            );
          }
          replayDiskFailure = cause;
          mode = 'spooling';
          scheduleProbe();
          return;
        }
        replayDiskFailure = null;
        // Once per reason, not at every probe: a read-only server answers the probe and
        // refuses the replay's write every second for as long as the failover takes.
        const { kind, reason, code } = describeDatabaseFailure(error);
        if (reason !== outage?.reason) {
          logger.error(
            { err: error, kind, code },
            `spool replay stopped: ${reason}; retrying after the next probe`,
          );
        }
        noteOutage(error, reason);
        mode = 'spooling';
        scheduleProbe();
      } finally {
        // Stopped or failed (the mode set above is not direct): the waiting batches are spooled.
        endCatchUp();
        replaying = null;
      }
    })();
  }

  /**
   * Waits, checking every probe interval, until the schema is one this release may write to.
   * Nothing is written meanwhile, so no event is retried in vain or dead-lettered for a table
   * or column that a migration will add; new callbacks keep going to the spool behind the
   * replayed ones. Throws when the database cannot be asked (the caller probes again) or when
   * the replay is stopped.
   */
  async function untilSchemaCompatible(): Promise<void> {
    const { schemaProblem } = options;
    if (!schemaProblem) return;
    for (;;) {
      const problem = await withTimeout(schemaProblem(), commitTimeoutMs);
      if (problem === null) {
        if (waitingForSchema !== null)
          logger.info('database schema compatible: replaying the spool');
        waitingForSchema = null;
        return;
      }
      if (problem !== waitingForSchema) {
        logger.error(
          { reason: problem, depth: spool?.depth() },
          'spool replay waits for a database schema this release can write to',
        );
      }
      waitingForSchema = problem;
      await sleep(probeIntervalMs, stopReplaying.signal);
    }
  }

  async function commitReplayed(events: StatusEvent[]): Promise<number[]> {
    stopReplaying.signal.throwIfAborted();
    const deferred = await replayWriter!.commit(events);
    outage = null; // the database takes writes again
    return deferred;
  }

  /** The counters, the replay's read live from its writer (a chunk may retry for long). */
  function currentStats(): IngestStats {
    const replay: Partial<ReplayCounts> = replayWriter?.counts ?? {};
    return {
      ...stats,
      replayed: replay.replayed ?? 0,
      replayRefused: replay.refused ?? 0,
      deadLettered: replay.deadLettered ?? 0,
      replayRetries: replay.retries ?? 0,
      queued: queue.length,
      inFlight: flights.size,
    };
  }

  /** Dead letters back into the spool (an operator fixed their cause), then replayed. */
  async function requeueDeadLetters(): Promise<{ requeued: number; kept: number }> {
    const result = await spool!.requeueDeadLetters();
    if (result.requeued > 0 && mode === 'direct') startReplay();
    return result;
  }
  spool?.lock.handle('requeue-dead-letters', requeueDeadLetters);
  spool?.lock.handle('status', async () => status());

  function status(): IngestStatus {
    let state: IngestStatus['spool']['state'] = 'disabled';
    if (spool) state = spool.failing() ? 'failing' : mode === 'direct' ? 'idle' : mode;
    const retrying = (replaying ? replayWriter?.retrying() : null) ?? outage?.sqlstate;
    return {
      database: mode === 'spooling' && replayDiskFailure === null ? 'unreachable' : 'ok',
      spool: {
        state,
        depth: spool?.depth() ?? 0,
        dead_letters: spool?.deadLetters() ?? 0,
        ...(retrying && { retrying }),
        ...(replaying && waitingForSchema !== null && { waiting_for_schema: waitingForSchema }),
      },
    };
  }

  /** Until the spool is empty and nothing replays, the deadline, or the signal. */
  async function replayUntil(deadline: number, signal?: AbortSignal): Promise<void> {
    while (spool && !spool.isEmpty() && performance.now() < deadline && !signal?.aborted) {
      // The probe (every probeIntervalMs) starts the replay as soon as the database answers.
      if (mode === 'spooling') scheduleProbe();
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(50, deadline - performance.now())),
      );
    }
  }

  return {
    record(event) {
      if (closed)
        return Promise.reject(unavailable('The service is shutting down; retry later', 1));
      const bytes = approximateEventBytes(event);
      // One event alone may exceed the byte bound: it is taken when nothing else waits.
      if (held >= queueMax || (held > 0 && heldBytes + bytes > queueMaxBytes)) {
        stats.refusedFull++;
        return Promise.reject(
          unavailable('Too many callbacks waiting to be stored; retry later', 1),
        );
      }
      held++;
      heldBytes += bytes;
      return new Promise<RecordOutcome>((resolve, reject) => {
        if (queue.length === 0) oldestQueuedAt = performance.now();
        queue.push({ event, bytes, resolve, reject });
        schedule();
      });
    },
    async drain(drainOptions = {}) {
      closed = true;
      await new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        schedule();
      });
      // Everything acknowledged is now committed or spooled. A spool left with events is
      // replayed while there is time: the next process on this directory would do it, but
      // there may be none soon (a scale-down).
      await replayUntil(drainOptions.deadline ?? performance.now(), drainOptions.signal);
      stopReplaying.abort(new Error('the drain deadline has passed'));
      if (probeTimer !== null) {
        clearTimeout(probeTimer);
        probeTimer = null;
      }
      await replaying;
      await spool?.close();
      if (spool && !spool.isEmpty()) {
        logger.warn(
          { dir: spool.dir, depth: spool.depth(), dead_letters: spool.deadLetters() },
          'stopping with events in the spool: the next process to open its directory replays them',
        );
      }
      logger.info({ ingest: currentStats() }, 'ingest drained');
    },
    start() {
      if (spool && !spool.isEmpty()) startReplay();
    },
    stats: currentStats,
    mode: () => mode,
    status,
  };
}

/** A late write is treated like a lost connection (withTimeout): it may still commit later. */
const NOT_COMMITTED = 'not committed';
// Backoff of an event retried in a batch's fallback (commitOneByOne): doubling from the first
// to the longest, within the batch's commit timeout. A failure that comes back at once (a
// migration not yet run) is then tried about ten times in the default 3 s, not thousands.
const FALLBACK_RETRY_FIRST_MS = 25;
const FALLBACK_RETRY_MAX_MS = 500;

function unavailableError(): AppError {
  return unavailable('The event could not be stored; retry later', 2);
}
