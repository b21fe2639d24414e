import type { Db } from '../db/database';
import { createFailureLog, createReasonCount, describeDatabaseFailure } from '../db/failure-reason';
import { isRefusedData, sqlState } from '../db/write-failure';
import type { Logger } from '../logger';
import { recordEvents } from '../messages/record-events';
import type { RecordOptions } from '../messages/record-events';
import type { Api } from '../messages/statuses';
import type { LookupResult, MessageLookup } from './lookup-client';
import { answeredKind, lookupEvent, tellsNews, unusableAnswer } from './lookup-event';
import {
  claimDueMessages,
  currentState,
  echoedCustomVariables,
  relaySigningKeyRef,
  postpone,
  recordStep,
  release,
  sweepStats,
} from './reconcile.repository';
import type { ClaimedMessage, SweepStats } from './reconcile.repository';
import { afterLookup, lookupPause, refusalPause } from './sweep-policy';

/**
 * The reconciliation sweep (DESIGN §11): a loop main.ts starts and stops. Each turn claims the
 * messages due for a lookup (shared by replicas through the database), looks each up at no
 * more than `rate` per second on this replica, records what the answer says through
 * recordEvents — the same normalization, dedupe, rules and relay as a callback — and moves
 * the message along RECONCILE_SCHEDULE (sweep-policy.ts), to `stuck` after the last step.
 */
export type LookupOutcome =
  | 'updated'
  | 'unchanged'
  | Exclude<LookupResult['kind'], 'found'>
  // SignalWire was asked, but what came of it could not be written (a row another session
  // held past SWEEP_WRITE_TIMEOUT_MS, the database gone): the message is looked up again.
  | 'not_recorded';

export interface ReconcileWorkerOptions {
  db: Db;
  logger: Logger;
  lookup: MessageLookup;
  schedule: readonly number[];
  /** Lookups per second on this replica (RECONCILE_RATE). */
  rate: number;
  /** Projects with credentials: the only ones looked up. */
  projects: readonly string[];
  storeBody: boolean;
  /** Passed to recordEvents (metrics, relay wake-up). */
  recordOptions?: RecordOptions;
  /**
   * Longest one lookup can take (the lookup client's timeout, SIGNALWIRE_TIMEOUT_MS; default its
   * default, 10 s): a claim's lease must cover a whole batch of lookups that all time out.
   */
  lookupTimeoutMs?: number;
  /** Longest wait between two looks for due messages. */
  pollMs?: number;
  /** How long a project's lookups pause after refusals in a row (default refusalPause). */
  refusalPause?: (refusals: number) => number;
  statsEveryMs?: number;
  onLookup?: (api: Api, outcome: LookupOutcome) => void;
  /** The time lookups' events are stamped with. */
  clock?: () => Date;
  /** Milliseconds for intervals (a lease's remaining time): monotonic, so NTP cannot step it. */
  elapsedClock?: () => number;
  /**
   * True while the database's schema is not one this release may write to (a newer release's
   * breaking migration, or its own not applied yet: DatabaseReadiness.schemaSuitable): no new
   * work is begun meanwhile.
   */
  paused?: () => boolean;
}

export interface ReconcileWorker {
  start(): void;
  /**
   * No new lookup; resolves once the loop has ended — or, with `waitMs`, after that long at
   * most: the lookup in flight is then abandoned (it ends by itself, its writes bounded by
   * SWEEP_WRITE_TIMEOUT_MS and the lock_timeout, and its message's lease runs out if they do
   * not make it). The shutdown gives a wait (SHUTDOWN_STOP_WAIT_MS), so that a lookup held up
   * (SignalWire slow to answer, a write waiting on a row) never holds up the recorder's drain.
   */
  stop(options?: { waitMs?: number }): Promise<void>;
  stats(): SweepStats | null;
}

/**
 * Room in a lease for the database work of a batch (the claim, recording what lookups found,
 * the steps): a lookup starts only while its lease still has this much left after the lookup's
 * own timeout, so it is never looked up by two replicas at once even when the database is slow.
 */
const RECORD_ROOM_MS = 30_000;

/**
 * How long the shutdown waits for the sweep's lookup in flight (main.ts): long enough for one
 * answered at SignalWire's usual pace to be written, short beside SHUTDOWN_GRACE_MS — the
 * recorder's drain and the spool's replay come after it, and an abandoned lookup costs only
 * another lookup once its lease runs out.
 */
export const SHUTDOWN_STOP_WAIT_MS = 2_000;

export function createReconcileWorker(options: ReconcileWorkerOptions): ReconcileWorker {
  const { db, logger, schedule } = options;
  const clock = options.clock ?? (() => new Date());
  // Every pause, pace and period of the worker is timed on it: with the wall clock stepped back
  // (NTP, a resumed VM) the sweep stopped for the step's length, its gauges frozen.
  const elapsed = options.elapsedClock ?? (() => performance.now());
  // Polling much faster than the first step would find nothing new; tests use short schedules.
  const pollMs = options.pollMs ?? Math.min(30_000, Math.max(50, (schedule[0] ?? 0) / 4));
  const statsEveryMs = options.statsEveryMs ?? 15_000;
  const intervalMs = 1_000 / options.rate;
  const batch = Math.max(1, Math.min(50, Math.ceil(options.rate * 2)));
  const lookupTimeoutMs = options.lookupTimeoutMs ?? 10_000;
  // Every lookup of the batch waiting its turn (RECONCILE_RATE) and timing out, and room for the
  // database work: 10 lookups at 5/s with a 10 s timeout take up to 102 s. A lease shorter than
  // that let a second replica claim the tail of a slow batch while this one still worked on it.
  const leaseMs = batch * (intervalMs + lookupTimeoutMs) + 2 * RECORD_ROOM_MS;
  let stopping = false;
  let running: Promise<void> | null = null;
  let wakeUp: (() => void) | null = null;
  let nextLookupAt = 0;
  let stats: SweepStats | null = null;
  let lastStatsAt = -Infinity;
  const failures = createFailureLog(logger, 'reconciliation');
  // Lookups in a row that found SignalWire overloaded or unavailable (sweep-policy.ts).
  let unavailable = 0;
  // Whether this replica's last lookup was answered (anything but SignalWire failing).
  let lastAnswered = false;
  // Per project: lookups in a row SignalWire refused its credentials for (401/403), and until
  // when none of its messages is looked up on this replica (refusalPause).
  const refusals = new Map<string, { count: number; pausedUntil: number }>();
  // Projects whose last lookup on this replica was answered with their credentials accepted.
  const accepted = new Set<string>();
  // Claimed messages whose lookup could not be written since the last one that was, and why.
  const unwritten = createReasonCount();

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        wakeUp = null;
        resolve();
      }
      wakeUp = done;
    });
  }

  /** Waits for this replica's next lookup slot (RECONCILE_RATE). */
  async function paced(): Promise<void> {
    const now = elapsed();
    const at = Math.max(now, nextLookupAt);
    nextLookupAt = at + intervalMs;
    if (at > now) await sleep(at - now);
  }

  /** Whether none of the project's messages may be looked up now: its credentials were refused. */
  function paused(project: string): boolean {
    return (refusals.get(project)?.pausedUntil ?? 0) > elapsed();
  }

  /**
   * A 401/403 says the project's credentials are wrong (rotated, revoked) — unless the project's
   * last lookup was answered with them and this message was refused before: then the refusal is
   * the message's own, and it counts as its step (DESIGN §11: recorded, not retried in a loop).
   * Wrong credentials pause the project's lookups on this replica, the message keeps its step
   * and waits twice the pause, so that once the pause ends another message of the project shows
   * whether the credentials work again. Returns whether the refusal was the credentials'.
   */
  async function credentialsRefused(message: ClaimedMessage): Promise<boolean> {
    const project = message.projectId;
    if (accepted.has(project) && message.sweepError === 'unauthorized') return false;
    accepted.delete(project);
    const count = (refusals.get(project)?.count ?? 0) + 1;
    const pauseMs = (options.refusalPause ?? refusalPause)(count);
    refusals.set(project, { count, pausedUntil: elapsed() + pauseMs });
    if (count === 1) {
      logger.warn(
        { project_id: project, message_id: message.id, pause_ms: pauseMs },
        // A straight apostrophe: SwStatusReconcileStalled tells operators to search for this text.
        "SignalWire refused the project's credentials (401/403): its lookups paused, backing off; check SIGNALWIRE_CREDENTIALS",
      );
    }
    await postpone(db, message, 2 * pauseMs, 'unauthorized');
    return true;
  }

  /** Any answer but a refusal (or none) says the project's credentials work. */
  function credentialsAccepted(project: string): void {
    accepted.add(project);
    if (refusals.delete(project)) {
      logger.info({ project_id: project }, "SignalWire accepts the project's credentials again");
    }
  }

  /**
   * Whether a lookup that found SignalWire failing (5xx, no answer in time) is the message's
   * own failure rather than SignalWire's: the lookup before it on this replica was answered,
   * and this message's last lookup, at this same step, failed the same way and was put off
   * (not an error a completed step left, such as a 404's, nor a credentials pause's). Such a
   * message was tried again at the same step for ever while every other lookup went through,
   * pausing the whole replica's sweep each time. An overloaded SignalWire (429) is never one
   * message's.
   */
  function ownFailure(message: ClaimedMessage, error: string): boolean {
    return (
      lastAnswered &&
      message.retried &&
      message.sweepError !== null &&
      message.sweepError !== 'unauthorized' &&
      error !== 'HTTP 429'
    );
  }

  async function lookUp(message: ClaimedMessage): Promise<void> {
    const looked = await options.lookup.lookup(message);
    // An answer about another message, or one that cannot be stored, is SignalWire's answer all
    // the same: asking again would not change it (a failed step, not unavailability).
    const unusable = looked.kind === 'found' ? unusableAnswer(message, looked.answer) : null;
    let result: LookupResult =
      unusable === null ? looked : { kind: 'failed', error: unusable, unavailable: false };
    if (result.kind === 'failed' && result.unavailable && ownFailure(message, result.error)) {
      // Counts as its step; SignalWire is not backed off from for it.
      result = { ...result, unavailable: false };
    }
    lastAnswered = !(looked.kind === 'failed' && looked.unavailable);
    if (result.kind === 'failed' && result.unavailable) {
      unavailable++;
      const pauseMs = lookupPause(unavailable, result.retryAfterMs);
      nextLookupAt = Math.max(nextLookupAt, elapsed() + pauseMs);
      if (unavailable === 1) {
        logger.warn(
          { error: result.error, pause_ms: pauseMs },
          'SignalWire overloaded or unavailable: lookups paused, backing off',
        );
      }
    } else {
      if (unavailable > 0) logger.info('SignalWire answers lookups again');
      unavailable = 0;
      if (result.kind !== 'unauthorized' && result.kind !== 'no_credentials') {
        credentialsAccepted(message.projectId);
      }
    }
    if (result.kind === 'unauthorized' && (await credentialsRefused(message))) {
      options.onLookup?.(message.api, 'unauthorized');
      return;
    }
    let outcome: LookupOutcome = result.kind === 'found' ? 'unchanged' : result.kind;
    if (result.kind === 'found') {
      // Judged against the message as it is now, not as claimed: a callback recorded during
      // the lookup already told what the answer says (a native callback has a timestamp the
      // lookup's event lacks, so dedupe would not catch the copy, and the app would get it
      // twice). Judged again by the write, against the row it holds locked (stillNews): a
      // callback committed between this read and the write is seen there. A message removed
      // meanwhile (retention) is left alone, also when the removal commits while the write
      // waits on its row (existingOnly).
      const current = await currentState(db, message.id);
      const echoed =
        current && message.api === 'native' ? await echoedCustomVariables(db, message.id) : null;
      const keyRef = current ? await relaySigningKeyRef(db, message.id) : null;
      const event =
        current &&
        lookupEvent(
          { ...message, ...current },
          result.answer,
          clock(),
          options.storeBody,
          echoed,
          keyRef,
        );
      if (event) {
        let recorded: Awaited<ReturnType<typeof recordEvents>>[number] | undefined;
        try {
          [recorded] = await recordEvents(db, [event], {
            ...options.recordOptions,
            existingOnly: true,
            stillNews: (answer, stored) => tellsNews(stored, answer),
          });
        } catch (error) {
          // PostgreSQL refused the answer's data itself (a value too large for an index entry,
          // a bad character): writing it again would fail again, and leaving the message to its
          // lease would look it up and fail on every lease for ever. It counts as its step, the
          // reason on its sweep state. Any other failure (the database unreachable, a lock
          // timeout) says nothing about the answer: the lease runs out and the step is tried
          // again, none used up.
          if (!isRefusedData(error)) throw error;
          logger.warn({ err: error, message_id: message.id }, 'lookup answer could not be stored');
          result = {
            kind: 'failed',
            error: `the answer could not be stored [SQLSTATE ${sqlState(error)}]`,
            unavailable: false,
          };
          outcome = 'failed';
        }
        if (recorded === 'recorded') {
          outcome = 'updated';
          logger.info(
            { message_id: message.id, api: message.api, from: message.status, to: event.status },
            'reconciliation found a status SignalWire never called back with',
          );
        }
      }
    }
    const next = afterLookup(message.step, schedule, result);
    if (next.kind === 'retry_later') {
      await postpone(db, message, next.retryMs, next.error);
    } else {
      const kind = result.kind === 'found' ? answeredKind(result.answer) : null;
      await recordStep(db, message, next.step, next.stuck, next.error, kind);
      if (next.stuck && outcome !== 'updated') {
        logger.warn(
          { message_id: message.id, api: message.api, status: message.status },
          'message stuck: still not final after the last lookup',
        );
      }
    }
    if (result.kind === 'unauthorized' || result.kind === 'not_found') {
      logger.warn(
        { message_id: message.id, api: message.api, outcome: result.kind },
        'lookup refused',
      );
    } else if (result.kind === 'failed' && next.kind === 'advance') {
      logger.warn(
        { message_id: message.id, api: message.api, error: result.error },
        'lookup answer unusable: counted as the step',
      );
    }
    options.onLookup?.(message.api, outcome);
  }

  /**
   * What came of a claimed message could not be written (its lookup's outcome, or giving it
   * back): it keeps its lease, which runs out, and the message is looked up again then — at the
   * same step: no step is used up, nor a lookup counted twice as a step. Said once when writes
   * start failing and each time the reason changes, not once per message: a row another
   * session holds fails one write per lease, a held table or a database gone fails them all.
   */
  function notWritten(message: ClaimedMessage, error: unknown): void {
    const { kind, reason, code } = describeDatabaseFailure(error);
    if (!unwritten.failed(reason)) return;
    logger.warn(
      { err: error, kind, code, message_id: message.id, lease_ms: leaseMs },
      `lookup not recorded: ${reason}; the message is looked up again once its lease runs out (said once until lookups are recorded again)`,
    );
  }

  function written(): void {
    const count = unwritten.succeeded();
    if (count !== undefined) logger.info({ not_recorded: count }, 'lookups are recorded again');
  }

  async function turn(): Promise<number> {
    if (options.paused?.()) return 0;
    if (elapsed() - lastStatsAt >= statsEveryMs) {
      lastStatsAt = elapsed();
      stats = await sweepStats(db, schedule, options.projects);
    }
    // The lease runs from the claim's statement on the database's clock; measured from just
    // before it on this one, it ends no earlier than this deadline. A monotonic clock: the wall
    // clock stepped back (NTP) would make the lease look longer than it is.
    const leaseEnds = elapsed() + leaseMs;
    const projects = options.projects.filter((project) => !paused(project));
    if (projects.length === 0) return 0;
    const claimed = await claimDueMessages(db, { limit: batch, leaseMs, schedule, projects });
    for (const message of claimed) {
      if (stopping) break;
      if (paused(message.projectId)) {
        // Its project's credentials were refused during this batch: another replica may hold
        // working ones.
        try {
          await release(db, message);
          written();
        } catch (error) {
          notWritten(message, error);
        }
        continue;
      }
      await paced();
      // stop() ends the wait for a slot early: it is no slot for one more lookup. Paused, the
      // rest of the batch waits for its lease to end, then for any replica's claim.
      if (stopping || options.paused?.()) break;
      if (elapsed() + lookupTimeoutMs + RECORD_ROOM_MS > leaseEnds) {
        // Another replica may claim these once the lease runs out; this one must not look
        // them up meanwhile. They wait for their lease to end, then for any replica's claim.
        logger.warn(
          { left: claimed.length - claimed.indexOf(message), lease_ms: leaseMs },
          'reconciliation batch outran its lease; the rest is left to a later claim',
        );
        break;
      }
      try {
        await lookUp(message);
        written();
      } catch (error) {
        // The lease runs out and another turn tries again; the loop goes on to the others.
        options.onLookup?.(message.api, 'not_recorded');
        notWritten(message, error);
      }
    }
    return claimed.length;
  }

  async function loop(): Promise<void> {
    while (!stopping) {
      // Backing off (SignalWire overloaded or unavailable): claim nothing meanwhile, so other
      // replicas may look those messages up.
      if (nextLookupAt > elapsed()) {
        await sleep(nextLookupAt - elapsed());
        continue;
      }
      let claimed = 0;
      try {
        claimed = await turn();
        failures.succeeded();
      } catch (error) {
        failures.failed(error);
      }
      if (stopping) break;
      if (claimed < batch) await sleep(failures.failing ? Math.max(pollMs, 1_000) : pollMs);
    }
  }

  /**
   * Starts the loop. `running` is cleared when it ends, also after a stop() that gave up waiting
   * for it (waitMs); one that ends while the sweep was started again meanwhile (start() after
   * such a stop, once the loop had seen `stopping`) is followed by another: never two at once.
   */
  function run(): void {
    const current = loop();
    running = current;
    const ended = (): boolean => {
      if (running !== current) return false;
      running = null;
      return true;
    };
    // A loop ends only once it sees `stopping` (it catches its turns' errors).
    void current.then(() => {
      if (ended() && !stopping) run();
    }, ended);
  }

  return {
    start() {
      stopping = false;
      // A loop a stop() gave up waiting for may still run (a lookup in flight): it goes on, or
      // is followed by another if it is already ending (run).
      if (!running) run();
      logger.info(
        { schedule_ms: schedule, rate_per_second: options.rate, projects: options.projects.length },
        'reconciliation sweep started',
      );
    },
    async stop({ waitMs }: { waitMs?: number } = {}) {
      stopping = true;
      wakeUp?.();
      const current = running;
      if (!current) return;
      if (!(await endsWithin(current, waitMs))) {
        logger.warn(
          { wait_ms: waitMs },
          'reconciliation sweep stopped with a lookup in flight: abandoned, its message is looked up again once its lease runs out',
        );
        return;
      }
      if (running === current) running = null;
    },
    stats: () => stats,
  };
}

/** Whether `work` settles within `ms` (always, without `ms`: it is awaited). */
async function endsWithin(work: Promise<void>, ms: number | undefined): Promise<boolean> {
  if (ms === undefined) {
    await work;
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([work.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}
