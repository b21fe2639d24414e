import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { Logger } from '../logger';
import { REMOVAL_STEP, REMOVAL_STEPS_LOCK } from '../db/removal-steps';
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
  /** Retention holds the lock (a step under way): next round. */
  | 'busy'
  /** The table is missing, or this user may not read the epoch: checking stops. */
  | 'unavailable';

interface Epoch {
  system_identifier: string;
  timeline: string;
  database_oid: string;
}

const UNDEFINED_TABLE = '42P01';
const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * One check, in one transaction: under retention's advisory lock (a reset is a removal step,
 * numbered as retention numbers its own), the epoch now against the one noted. A try-lock: a
 * retention step holds it for its batch, and the next round comes in CHECK_EVERY_MS.
 */
export async function checkFeedEpoch(db: Db, logger: Logger): Promise<EpochCheck> {
  return db
    .transaction()
    .setIsolationLevel('read committed')
    .execute(async (trx) => {
      const { rows: lock } = await sql<{ mine: boolean }>`
        SELECT pg_try_advisory_xact_lock(${REMOVAL_STEPS_LOCK}) AS mine`.execute(trx);
      if (!lock[0]?.mine) return 'busy';
      // The timeline is the WAL file name's first 8 hex digits; pg_control_system() and
      // pg_walfile_name() need no superuser (PostgreSQL 15), but a managed service may deny them.
      const { rows: now } = await sql<Epoch>`
        SELECT (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
               (('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint)::text
                 AS timeline,
               (SELECT oid::text FROM pg_database WHERE datname = current_database())
                 AS database_oid`.execute(trx);
      const current = now[0]!;
      const { rows: noted } = await sql<Epoch>`
        SELECT system_identifier, timeline::text AS timeline, database_oid::text AS database_oid
        FROM sw_status_feed_epoch FOR UPDATE`.execute(trx);
      const before = noted[0];
      if (before === undefined) {
        await sql`
          INSERT INTO sw_status_feed_epoch (one, system_identifier, timeline, database_oid)
          VALUES (true, ${current.system_identifier}, ${current.timeline}::bigint,
                  ${current.database_oid}::oid)`.execute(trx);
        return 'noted';
      }
      const changes = changesBetween(before, current);
      if (changes.length === 0) return 'unchanged';
      await sql`
        UPDATE sw_status_feed_epoch
        SET system_identifier = ${current.system_identifier},
            timeline = ${current.timeline}::bigint,
            database_oid = ${current.database_oid}::oid, noted_at = now()`.execute(trx);
      await sql`
        WITH newest AS (SELECT ${FEED_RESET.tx}::xid8 AS tx, ${FEED_RESET.seq}::bigint AS seq),
        ${REMOVAL_STEP}
        SELECT 1`.execute(trx);
      logger.warn(
        { before, now: current },
        `the change feed was reset: ${changes.join('; ')}. Transaction ids may have gone back: ` +
          'consumers holding cursors from before get 410 cursor_expired and must resync (read ' +
          'the current state, then follow the feed from after=now)',
      );
      return 'reset';
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
 * replicas replay the reset). No round while the schema is not this release's (`paused`). A
 * check refused for good (the table missing, or 42501: a managed PostgreSQL denying
 * pg_control_system or pg_walfile_name) is logged once and checking stops; any other failure
 * (the database away, a standby behind DATABASE_URL) once while it lasts, then retried. Never
 * part of readiness.
 */
export function startFeedEpochChecks({
  db,
  logger,
  intervalMs = CHECK_EVERY_MS,
  paused = () => false,
}: {
  db: Db;
  logger: Logger;
  intervalMs?: number;
  paused?: () => boolean;
}): FeedEpochChecker {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let failing = false;

  const round = async (): Promise<void> => {
    if (paused()) return;
    try {
      await checkFeedEpoch(db, logger);
      if (failing) logger.info('feed epoch: checking again');
      failing = false;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === UNDEFINED_TABLE || code === INSUFFICIENT_PRIVILEGE) {
        logger.warn(
          { err: error },
          'feed epoch: cannot be checked here (sw_status_feed_epoch missing, or this user may ' +
            'not read pg_control_system() / pg_walfile_name()): a failover or restore that ' +
            'lost transactions will not reset the change feed; checking stops',
        );
        stopped = true;
        return;
      }
      if (!failing) logger.warn({ err: error }, 'feed epoch: could not check');
      failing = true;
    }
  };
  const schedule = (delayMs: number): void => {
    if (stopped) return;
    // setTimeout is monotonic: a stepped wall clock neither hurries nor delays a round.
    timer = setTimeout(() => {
      timer = null;
      running = round().finally(() => {
        running = null;
        schedule(intervalMs);
      });
    }, delayMs);
    timer.unref();
  };
  schedule(0);

  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
