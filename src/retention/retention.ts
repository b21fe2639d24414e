import { sql } from 'kysely';
import { Counter } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Db } from '../db/database';
import type { Logger } from '../logger';
import { startTimedRounds } from '../process/timed-rounds';
import type { TimedRounds } from '../process/timed-rounds';
import { METRIC_PREFIX } from '../metrics/metrics';
import {
  EVENTS_PER_STEP,
  removeDeliveredRelayJobs,
  removeExpiredMessages,
} from './retention.repository';
import type { RemovedCounts } from './retention.repository';

/**
 * Retention (DESIGN §13): with RETENTION_DAYS set, messages whose last activity is older are
 * removed with their events and relay jobs; with RELAY_KEEP_DELIVERED_DAYS, delivered relay
 * jobs older than that. Continuously, in small steps (retention.repository.ts): a round runs
 * steps back to back while they come back full, yielding between them, then waits for the
 * next round. Every replica runs it; SKIP LOCKED lets them share the work.
 *
 * Deleted rows leave free space that autovacuum makes reusable, and the steady state (a day
 * removed per day written) reuses it: the tables stop growing at about RETENTION_DAYS of
 * history instead of shrinking on disk.
 *
 * The stats rollups lose what is removed, in the same transaction (retention.repository.ts):
 * GET /v1/stats counts the retained messages, as a scan of the tables would (DESIGN §6), and
 * `npm run stats:rebuild`, which recounts them, changes nothing.
 */
export interface RetentionOptions {
  /** RETENTION_DAYS; undefined: messages are kept. */
  retentionDays?: number;
  /** RELAY_KEEP_DELIVERED_DAYS; undefined: delivered relay jobs are kept. */
  relayKeepDeliveredDays?: number;
  /**
   * CALLBACK_TOKEN_TTL_DAYS: how long a removed message's late receipt may still come
   * (retention.repository.ts leaves its send's intent for that long).
   */
  callbackTokenTtlDays?: number;
  /** Rows per step. */
  batch?: number;
  /** Between rounds. */
  intervalMs?: number;
  /** Between the steps of a round: other work gets the database and the event loop. */
  pauseMs?: number;
  /** True while the schema is not this release's (DatabaseReadiness.schemaSuitable): no round. */
  paused?: () => boolean;
}

export interface Retention {
  /** One round now, until a step comes back short; what it removed. For tests (`now`: the database's clock when not given). */
  runOnce(now?: Date): Promise<RemovedCounts>;
  start(): void;
  stop(): Promise<void>;
}

const DAY_MS = 86_400_000;

export function createRetention({
  db,
  logger,
  registry,
  options,
}: {
  db: Db;
  logger: Logger;
  registry: Registry;
  options: RetentionOptions;
}): Retention | undefined {
  const { retentionDays, relayKeepDeliveredDays, callbackTokenTtlDays } = options;
  if (retentionDays === undefined && relayKeepDeliveredDays === undefined) return undefined;
  const shortRetention = retentionShorterThanTokens(retentionDays, callbackTokenTtlDays);
  if (shortRetention) logger.warn(shortRetention);
  const batch = options.batch ?? 500;
  const intervalMs = options.intervalMs ?? 60_000;
  const pauseMs = options.pauseMs ?? 50;
  const removedTotal = new Counter({
    name: `${METRIC_PREFIX}retention_removed_total`,
    help: 'Rows removed by retention (RETENTION_DAYS, RELAY_KEEP_DELIVERED_DAYS), by table',
    labelNames: ['table'] as const,
    registers: [registry],
  });
  // Also ends a round's steps early (runOnce), not only the rounds.
  let stopped = false;
  let failing = false;

  const runOnce = async (at?: Date): Promise<RemovedCounts> => {
    // The database's clock, not this replica's: a replica whose clock is days ahead (a VM
    // resumed, a bad RTC) would otherwise remove messages whose callbacks came seconds ago,
    // before SwStatusClockSkew could fire.
    const now = at ?? (await databaseNow(db));
    const total: RemovedCounts = { messages: 0, status_events: 0, relay_jobs: 0 };
    const add = (counts: Partial<RemovedCounts>) => {
      for (const [table, n] of Object.entries(counts) as Array<[keyof RemovedCounts, number]>) {
        total[table] += n;
        if (n > 0) removedTotal.inc({ table }, n);
      }
    };
    try {
      const messagesHorizon = horizonOf(now, retentionDays);
      if (messagesHorizon) {
        for (;;) {
          const step = await removeExpiredMessages(
            db,
            messagesHorizon,
            batch,
            callbackTokenTtlDays,
          );
          add(step);
          // A step is full when it reached either bound: batch messages, or EVENTS_PER_STEP
          // events or relay jobs (a huge history, removed over several steps).
          const full =
            step.messages >= batch ||
            step.status_events >= EVENTS_PER_STEP ||
            step.relay_jobs >= EVENTS_PER_STEP;
          if (!full || stopped) break;
          await pause(pauseMs);
        }
      }
      const jobsHorizon = horizonOf(now, relayKeepDeliveredDays);
      if (jobsHorizon) {
        for (;;) {
          const removed = await removeDeliveredRelayJobs(db, jobsHorizon, batch);
          add({ relay_jobs: removed });
          if (removed < batch || stopped) break;
          await pause(pauseMs);
        }
      }
    } finally {
      // Also when a step failed: the steps before it committed, and the metric counted them.
      if (total.messages + total.status_events + total.relay_jobs > 0) {
        logger.info(
          {
            removed: total,
            retention_days: retentionDays,
            relay_keep_delivered_days: relayKeepDeliveredDays,
          },
          'retention: removed expired history',
        );
      }
    }
    return total;
  };

  const round = async (): Promise<void> => {
    if (options.paused?.()) return;
    try {
      await runOnce();
      if (failing) logger.info('retention: running again');
      failing = false;
    } catch (error) {
      // The database is away or busy: the next round tries again.
      if (!failing) logger.warn({ err: error }, 'retention: a step failed');
      failing = true;
    }
  };
  let rounds: TimedRounds | null = null;

  return {
    runOnce,
    start() {
      if (stopped) return;
      // The first round soon after start, not a whole interval later.
      rounds ??= startTimedRounds(round, { firstDelayMs: Math.min(intervalMs, 5_000), intervalMs });
    },
    async stop() {
      stopped = true;
      await rounds?.stop();
    },
  };
}

/**
 * The start log's warning when RETENTION_DAYS is below CALLBACK_TOKEN_TTL_DAYS, else null.
 * Retention counts from a message's last activity, whatever its status: a message still
 * waiting for its receipt can be removed while its callback token is valid. The receipt then
 * creates it anew from the callback alone, without its earlier history; its relay to the
 * caller's own callback is kept by the send intent the removal leaves (retention.repository.ts).
 */
export function retentionShorterThanTokens(
  retentionDays: number | undefined,
  callbackTokenTtlDays: number | undefined,
): string | null {
  if (retentionDays === undefined || callbackTokenTtlDays === undefined) return null;
  if (retentionDays >= callbackTokenTtlDays) return null;
  return (
    `RETENTION_DAYS (${retentionDays}) is below CALLBACK_TOKEN_TTL_DAYS ` +
    `(${callbackTokenTtlDays}): a message still waiting for its delivery receipt can be removed ` +
    'while its callback token is valid; a receipt arriving later creates it anew with only ' +
    'the events from then on (its earlier history, its created time and sent_via_proxy are ' +
    "gone). Its relay to the caller's own status callback is kept."
  );
}

async function databaseNow(db: Db): Promise<Date> {
  const { rows } = await sql<{
    now_ms: number;
  }>`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms`.execute(db);
  return new Date(rows[0]!.now_ms);
}

// Nothing is older than this: a horizon before it (a RETENTION_DAYS of thousands of years) means
// nothing expires, where PostgreSQL would refuse the timestamp (out of range) every round.
const EARLIEST = Date.parse('0001-01-01T00:00:00Z');

/** `days` before `now`; null when unset or before anything stored could be. */
function horizonOf(now: Date, days: number | undefined): Date | null {
  if (days === undefined) return null;
  const horizon = now.getTime() - days * DAY_MS;
  return Number.isFinite(horizon) && horizon >= EARLIEST ? new Date(horizon) : null;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
