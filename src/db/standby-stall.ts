import { sql } from 'kysely';
import type { Db } from './database';

/**
 * Why nothing commits although the database answers: with synchronous replication
 * (`synchronous_standby_names`), a COMMIT waits until a standby confirms it, and a standby
 * that stopped confirming (frozen, partitioned, gone; or a name no standby has) holds every
 * commit while reads and `select 1` answer at once. The outage spool takes callbacks
 * meanwhile; this says why, so that an operator looks at the standby, not the network, and
 * the replay waits instead of adding a connection stuck at its COMMIT per attempt
 * (ingest/group-commit-recorder.ts probe).
 */
export const STANDBY_STALL =
  'commits are waiting for a synchronous standby that does not confirm them (synchronous_standby_names)';

/**
 * How many sessions of this database have waited longer than `longerThanMs` for a synchronous
 * standby to confirm their COMMIT (wait_event SyncRep) — counted only while a COMMIT of this
 * session would wait too (synchronous_standby_names set, synchronous_commit neither `local` nor
 * `off`): an operator's mitigation lets new commits through while the abandoned ones keep
 * waiting. Every commit waits a moment under synchronous replication: only a wait longer than a
 * batch's commit timeout counts. The service's own sessions are visible to it (same user);
 * others' waits only with pg_read_all_stats. Throws where pg_stat_activity may not be read.
 */
export async function commitsWaitingForStandby(db: Db, longerThanMs: number): Promise<number> {
  const { rows } = await sql<{ waiting: number }>`
    SELECT count(*)::int AS waiting FROM pg_stat_activity
    WHERE wait_event = 'SyncRep' AND datname = current_database()
      AND query_start < clock_timestamp() - make_interval(secs => ${longerThanMs / 1000})
      AND current_setting('synchronous_standby_names') <> ''
      AND current_setting('synchronous_commit') NOT IN ('local', 'off')`.execute(db);
  return rows[0]!.waiting;
}
