import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { Logger } from '../logger';
import { startTimedRounds } from '../process/timed-rounds';
import type { RoundEnd } from '../process/timed-rounds';
import { REMOVAL_STEPS_LOCK, RESET_STEP } from '../db/removal-steps';
import { FEED_RESET } from './feed-cursor';

/**
 * The feed reset. A cursor is a transaction id of the database that issued it. After a
 * failover to an asynchronous standby that lost transactions, a point-in-time recovery, or a
 * restore (a logical one restarts the ids lower), the primary hands out ids LOWER than cursors
 * consumers already hold: the route refuses such a cursor only while it lies beyond the
 * snapshot's xmax, and once the counter passed it (seconds on a busy primary) its consumer
 * would silently skip every event committed with an id in the gap.
 *
 * So the primary notes the database it runs on (sw_status_feed_epoch, db/migrations/0016): the
 * cluster's system identifier (another one: a restore into another cluster), the timeline (a
 * promotion or a point-in-time recovery moves it) and the database's oid (a restore into
 * another database). Found changed, it records a feed reset: a removal step at FEED_RESET,
 * beyond every event, with retention's mechanism (db/migrations/0013). Every cursor issued
 * before it is then refused 410 cursor_expired (src/feed/feed.routes.ts), whose documented
 * answer is the one its consumer needs: read the current state, follow from after=now; every
 * cursor issued after it carries the new step and is unaffected (from then on every cursor is
 * the long form, src/feed/feed-cursor.ts: no new field, no new form).
 *
 * A data directory restored in place keeps all three; its transaction counter goes back, which
 * a pod that saw the higher one notices (EpochMemory). With every pod stopped, and after
 * pg_upgrade (a new system identifier and timeline 1, the same ids: no reset needed), the
 * operator runs src/feed/feed-reset-cli.ts.
 *
 * Not covered: a cursor of another deployment sharing CALLBACK_TOKEN_SECRET on the same
 * cluster (only the route's xmax check), and cursors a consumer used between the failover and
 * the first check here (up to CHECK_EVERY_MS): they were issued before the reset, so their
 * consumer gets the 410 on its next request after it.
 */

const CHECK_EVERY_MS = 10_000;

export type EpochCheck =
  /** No row yet (the first run, an upgrade): noted, no reset. */
  | 'noted'
  | 'unchanged'
  | 'reset'
  /** The table is missing, or this user may not read the epoch: checking stops. */
  | 'unavailable';

interface Epoch {
  system_identifier: string;
  timeline: string;
  database_oid: string;
}

const UNDEFINED_TABLE = '42P01';
const INSUFFICIENT_PRIVILEGE = '42501';
/** A managed service without the function (Aurora answers pg_walfile_name() so). */
const FEATURE_NOT_SUPPORTED = '0A000';
const UNDEFINED_FUNCTION = '42883';
/** What the database lacks: it will answer the same for as long as it runs. Checking stops. */
const REFUSED_FOR_GOOD = new Set([FEATURE_NOT_SUPPORTED, UNDEFINED_FUNCTION]);
/**
 * Refusals an operator's work can end (a dump from before migration 0016 restored under running
 * pods, grants applied last, a privilege granted later): checked again, slowly. Stopping for
 * good lost every later failover and restore until the pod restarted.
 */
const REFUSED_FOR_NOW = new Set([UNDEFINED_TABLE, INSUFFICIENT_PRIVILEGE]);
/** How long after such a refusal the next check comes: a failing statement, rarely. */
const REFUSED_RETRY_MS = 5 * 60_000;

/**
 * What a pod remembers between its checks: the highest transaction counter (the snapshot's
 * xmax) it saw on the primary. A data directory restored in place (a volume or VM snapshot
 * rolled back) keeps the system identifier, the timeline and the oid, but its counter goes
 * back: a pod that saw a higher one before notices, without writing anything while nothing
 * changed. In memory only: a restore with every pod stopped is the operator's
 * (`npm run feed:reset`, src/feed/feed-reset-cli.ts).
 */
export interface EpochMemory {
  highestXmax?: bigint;
}

/**
 * The stateful check a pod runs: `checkFeedEpoch` with this pod's memory of the transaction
 * counter, across reconnections and restarts of the database.
 */
export function createFeedEpochCheck(): (db: Db, logger: Logger) => Promise<EpochCheck> {
  const memory: EpochMemory = {};
  return (db, logger) => checkFeedEpoch(db, logger, memory);
}

/**
 * The epoch as the primary shows it now, and its transaction counter (read only: no
 * transaction id assigned). The timeline is the WAL file name's first 8 hex digits;
 * pg_control_system() and pg_walfile_name() need no superuser (PostgreSQL 15), but a managed
 * service may deny them or lack them.
 */
async function currentEpoch(trx: Db): Promise<Epoch & { xmax: string }> {
  const { rows } = await sql<Epoch & { xmax: string }>`
    SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
           (('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint)::text
             AS timeline,
           (SELECT oid::text FROM pg_database WHERE datname = current_database())
             AS database_oid,
           pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`.execute(trx);
  return rows[0]!;
}

/**
 * One check, in one transaction: the epoch now against the one noted, and the transaction
 * counter against the highest this pod saw (`memory`; none: a fresh pod). Found unchanged it
 * takes no lock and writes nothing (an idle primary stays idle). Otherwise it looks again under
 * retention's advisory lock (a reset is a removal step, numbered as retention numbers its own;
 * the lock serialises every writer of the row, so the row is read without FOR UPDATE): waited
 * for, within the BEGIN's lock_timeout — a try-lock lost to a retention backlog (its batches
 * 50 ms apart, after restoring an older snapshot) round after round, and the reset with it.
 * Another pod may have noted the change meanwhile: then nothing is left to do.
 */
export async function checkFeedEpoch(
  db: Db,
  logger: Logger,
  memory: EpochMemory = {},
): Promise<EpochCheck> {
  let seen: bigint | undefined;
  const result = await db
    .transaction()
    .setIsolationLevel('read committed')
    .execute(async (trx) => {
      const { xmax, ...current } = await currentEpoch(trx);
      seen = BigInt(xmax);
      const wentBack = memory.highestXmax !== undefined && seen < memory.highestXmax;
      const unlocked = await notedEpoch(trx);
      if (!wentBack && unlocked && changesBetween(unlocked, current).length === 0) {
        return 'unchanged';
      }
      await sql`SELECT pg_advisory_xact_lock(${REMOVAL_STEPS_LOCK})`.execute(trx);
      const before = await notedEpoch(trx);
      // No row and nothing seen going back: the first run, an upgrade, or a restore to before
      // migration 0016 with no pod running across it (then the operator's feed:reset).
      if (before === undefined && !wentBack) {
        await noteEpoch(trx, current);
        return 'noted';
      }
      const changes = before === undefined ? [] : changesBetween(before, current);
      if (wentBack) {
        changes.push(
          `transaction ids went back (the counter at ${seen}, this process saw ` +
            `${memory.highestXmax}): the database was restored or failed over to a standby ` +
            'that had not received the latest transactions',
        );
      }
      if (changes.length === 0) return 'unchanged';
      await noteEpoch(trx, current);
      await recordReset(trx);
      logger.warn(
        { before, now: current },
        `the change feed was reset: ${changes.join('; ')}. Transaction ids may have gone back: ` +
          'consumers holding cursors from before get 410 cursor_expired and must resync (read ' +
          'the current state, then follow the feed from after=now)',
      );
      return 'reset';
    });
  // Remembered once committed: a reset rolled back must be found again next round.
  if (seen !== undefined) {
    memory.highestXmax =
      result === 'reset' || memory.highestXmax === undefined || seen > memory.highestXmax
        ? seen
        : memory.highestXmax;
  }
  return result;
}

async function notedEpoch(trx: Db): Promise<Epoch | undefined> {
  const { rows } = await sql<Epoch>`
    SELECT system_identifier, timeline::text AS timeline, database_oid::text AS database_oid
    FROM sw_status_feed_epoch`.execute(trx);
  return rows[0];
}

/** The epoch noted as `current` (the row inserted, or updated). */
async function noteEpoch(trx: Db, current: Epoch): Promise<void> {
  await sql`
    INSERT INTO sw_status_feed_epoch (one, system_identifier, timeline, database_oid)
    VALUES (true, ${current.system_identifier}, ${current.timeline}::bigint,
            ${current.database_oid}::oid)
    ON CONFLICT (one) DO UPDATE
    SET system_identifier = EXCLUDED.system_identifier, timeline = EXCLUDED.timeline,
        database_oid = EXCLUDED.database_oid, noted_at = now()`.execute(trx);
}

/** A removal step at FEED_RESET: every cursor issued before it is refused 410. */
async function recordReset(trx: Db): Promise<void> {
  await sql`
    WITH newest AS (SELECT ${FEED_RESET.tx}::xid8 AS tx, ${FEED_RESET.seq}::bigint AS seq),
    ${RESET_STEP}
    SELECT 1`.execute(trx);
}

/**
 * The operator's feed reset (src/feed/feed-reset-cli.ts), for what the checks cannot see:
 * `reset` records one now and notes the current epoch (a snapshot restored in place with every
 * pod stopped); `note` only notes the current epoch (after pg_upgrade, which changes the system
 * identifier and the timeline but keeps the transaction ids: no reset needed). Waits for
 * retention's lock rather than skipping. What it did, in words.
 */
export async function resetFeedByOperator(db: Db, mode: 'reset' | 'note'): Promise<string> {
  return db
    .transaction()
    .setIsolationLevel('read committed')
    .execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(${REMOVAL_STEPS_LOCK})`.execute(trx);
      const { xmax: _xmax, ...current } = await currentEpoch(trx);
      const words = (epoch: Epoch) =>
        `system identifier ${epoch.system_identifier}, timeline ${epoch.timeline}, ` +
        `database oid ${epoch.database_oid}`;
      const epoch = words(current);
      const before = await notedEpoch(trx);
      await noteEpoch(trx, current);
      if (mode === 'note') {
        // Said with what it replaces: noted after a failover or a restore (not pg_upgrade), it
        // hides the reset the consumers need, and the operator should see what changed.
        return (
          `feed epoch noted (${epoch}; before: ${before ? words(before) : 'none'}), no reset: ` +
          'cursors consumers hold stay valid'
        );
      }
      await recordReset(trx);
      return (
        `change feed reset recorded and epoch noted (${epoch}): consumers holding cursors from ` +
        'before get 410 cursor_expired and resync (read the current state, follow from after=now)'
      );
    });
}

/** What changed, in words for the operator. */
function changesBetween(before: Epoch, now: Epoch): string[] {
  const changes: string[] = [];
  if (before.system_identifier !== now.system_identifier) {
    changes.push(
      `system identifier ${before.system_identifier} → ${now.system_identifier} (a restore ` +
        'into another cluster)',
    );
  }
  if (before.timeline !== now.timeline) {
    changes.push(
      `timeline ${before.timeline} → ${now.timeline} (a failover, switchover or point-in-time ` +
        'recovery)',
    );
  }
  if (before.database_oid !== now.database_oid) {
    changes.push(
      `database oid ${before.database_oid} → ${now.database_oid} (a restore into another database)`,
    );
  }
  return changes;
}

export interface FeedEpochChecker {
  stop(): Promise<void>;
}

/**
 * Checks at start and then every CHECK_EVERY_MS, on the primary's pool (DATABASE_URL: the
 * replicas replay the reset), remembering the transaction counter between rounds. No round
 * while the schema is not this release's (`paused`). A check refused for good (0A000 or 42883:
 * a managed PostgreSQL lacking pg_control_system or pg_walfile_name) is logged once and
 * checking stops; refused for now (the table missing, 42501: denied) logged once and checked
 * again every REFUSED_RETRY_MS; any other failure (the database away, a standby behind
 * DATABASE_URL) logged once while it lasts, then retried each round. Never part of readiness.
 */
export function startFeedEpochChecks({
  db,
  logger,
  intervalMs = CHECK_EVERY_MS,
  refusedRetryMs = REFUSED_RETRY_MS,
  paused = () => false,
}: {
  db: Db;
  logger: Logger;
  intervalMs?: number;
  refusedRetryMs?: number;
  paused?: () => boolean;
}): FeedEpochChecker {
  let failing = false;
  const check = createFeedEpochCheck();

  /** One round; when the next comes, or 'stop'. */
  const round = async (): Promise<RoundEnd> => {
    if (paused()) return intervalMs;
    try {
      await check(db, logger);
      if (failing) logger.info('feed epoch: checking again');
      failing = false;
      return intervalMs;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'string' && REFUSED_FOR_GOOD.has(code)) {
        logger.warn(
          { err: error },
          'feed epoch: cannot be checked here (this database lacks pg_control_system() / ' +
            'pg_walfile_name()): a failover or restore that lost transactions will not reset ' +
            'the change feed; checking stops',
        );
        return 'stop';
      }
      const refused = typeof code === 'string' && REFUSED_FOR_NOW.has(code);
      if (!failing) {
        logger.warn(
          { err: error },
          refused
            ? 'feed epoch: cannot be checked now (sw_status_feed_epoch missing, or this ' +
                "database's user may not read it or pg_control_system() / pg_walfile_name()): a " +
                'failover or restore that lost transactions will not reset the change feed ' +
                `meanwhile; checked again every ${refusedRetryMs / 60_000} minutes`
            : 'feed epoch: could not check',
        );
      }
      failing = true;
      return refused ? refusedRetryMs : intervalMs;
    }
  };

  return startTimedRounds(round, { firstDelayMs: 0, intervalMs });
}
