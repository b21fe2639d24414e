import type { PostgresPool, PostgresPoolClient } from 'kysely';
import type { Logger } from '../logger';

/**
 * DATABASE_READ_URL's pool, which hands out connections only to a server that reads what the
 * primary has: a standby of DATABASE_URL's database that keeps up with it, or the primary
 * itself (DATABASE_READ_URL naming DATABASE_URL's server, or an address that moved to the new
 * primary after a failover).
 *
 * The change feed, lists and stats read from a streaming hot standby (DESIGN §13). A server
 * that answers reads but no longer follows the primary answers them from a history that
 * stopped: the feed gave empty pages for ever and lists and stats froze, all with a 200 and
 * nothing in the logs. Three ways to get there, each refused:
 * - the standby was promoted and split off (a failover that chose another node, a replica
 *   promoted by hand): no longer in recovery, and not the primary (NOT_A_STANDBY);
 * - it stays in recovery but stopped receiving or replaying the primary's WAL (a failover
 *   promoted another node and this one still points at the old primary, a dropped slot, a
 *   broken primary_conninfo, a rotated replication password): it has not replayed what the
 *   primary had written MAX_REPLICA_LAG_MS ago (NOT_FOLLOWING);
 * - it is another database altogether: another database of the primary's server (a second
 *   deployment's, a restored copy, `postgres`), or a standby of another cluster. Its
 *   pg_postmaster_start_time() may well equal the primary's, so the database and the cluster
 *   are compared too (notSameDatabase).
 * Reads are answered 503 instead (db/database-unavailable.ts counts these errors as the
 * database being unavailable), which a dashboard shows and an alert on 5xx sees, and the change
 * is logged once, until DATABASE_READ_URL leads to a server that follows again.
 *
 * Each connection is checked when it is handed out, at most once every `checkEveryMs`: a
 * promotion ends no session, and behind one URL there may be several servers. (Behind
 * PgBouncer in transaction mode a check and the read that follows may still meet different
 * servers.) DATABASE_URL's side (its identity, its WAL position) is asked at most once per
 * `checkEveryMs` for all connections, within the caller's deadline (`writerState`).
 *
 * Lag is judged by position, not by time: the primary's pg_current_wal_lsn() is sampled at each
 * of those asks, and a standby is refused once its pg_last_wal_replay_lsn() is still below the
 * position the primary had at least MAX_REPLICA_LAG_MS ago. An idle primary writes nothing, and
 * its standby's last replayed transaction grows old (pg_last_xact_replay_timestamp) while it
 * follows perfectly; its position does not fall behind. The first MAX_REPLICA_LAG_MS after the
 * process starts have no sample old enough, and judge no lag. Samples are timed on the
 * monotonic clock: a wall clock stepped back would put them all "in the future" and judge no lag
 * for as long as the step. Every function used here is executable by any role that may read the
 * tables the reads need (READ_TABLES; test/db/read-replica-identity.test.ts checks it with one).
 */
export const NOT_A_STANDBY =
  "DATABASE_READ_URL leads to a server that is neither a standby nor DATABASE_URL's: a promoted replica no longer follows the primary";

/**
 * How far behind the primary a standby may be, in time, before its reads are refused: far
 * beyond a healthy standby's replay delay (well under a second) or a long query's replay
 * conflict wait (max_standby_streaming_delay, 30 s by default), short enough that a frozen
 * history shows within a minute or so.
 */
export const MAX_REPLICA_LAG_MS = 60_000;

export function notFollowing(maxLagMs: number): string {
  return (
    `DATABASE_READ_URL leads to a standby that no longer follows DATABASE_URL's server: it has ` +
    `not replayed what the primary had written ${maxLagMs / 1_000} s ago (replication stopped ` +
    'or paused, or it follows a primary that is no longer DATABASE_URL)'
  );
}

/** The two databases, named by their database and their cluster (never a URL: no password). */
export function notSameDatabase(reader: Identity, writer: Identity): string {
  return (
    `DATABASE_READ_URL leads to another database than DATABASE_URL's: "${reader.database}" ` +
    `of cluster ${reader.cluster}, where DATABASE_URL has "${writer.database}" of cluster ` +
    `${writer.cluster} (another deployment's database, a restored copy, or a standby of ` +
    'another cluster)'
  );
}

export interface Identity {
  /** pg_control_system()'s system_identifier: a standby's is its primary's. */
  cluster: string;
  database: string;
  /** The database's oid in pg_database: the same on a physical standby. */
  databaseOid: string;
}

/** DATABASE_URL's server, as the check needs it. */
export interface WriterState extends Identity {
  /** pg_postmaster_start_time(), as text. */
  started: string;
  /** pg_current_wal_lsn(), as text; null when DATABASE_URL's server is itself in recovery. */
  lsn: string | null;
}

/** DATABASE_URL's server's WriterState, in one round trip. */
export const WRITER_STATE_SQL = `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS cluster,
       current_database() AS database,
       (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS "databaseOid",
       pg_postmaster_start_time()::text AS started,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS lsn`;

/**
 * The tables the reads served from DATABASE_READ_URL read: lists, the single message's history
 * and the relays (messages, status_events, relay_jobs), the change feed (and retention's marks
 * it judges cursors by), stats. A user granted SELECT table by table before a migration added
 * one (0013's sw_status_feed_removals), or a standby that has not replayed the migration yet,
 * answered every read touching it 500; refused here, they answer 503 and the log names the
 * table.
 */
export const READ_TABLES = [
  'messages',
  'status_events',
  'relay_jobs',
  'sw_status_feed_removals',
  'sw_status_retention',
  // GET /v1/stats: the narrow rollups (migration 0009), not the wide stats_minutes/stats_hours.
  'stats_deltas',
  'stats_minute_counts',
  'stats_minute_latency',
  'stats_hour_counts',
  'stats_hour_latency',
] as const;

export function notReadable(user: string, tables: readonly string[]): string {
  return (
    `DATABASE_READ_URL's user ${user} may not read ${tables.join(', ')}: SELECT not granted, ` +
    'or the table is not there yet (a standby that has not replayed a migration)'
  );
}

const READER_STATE_SQL = `SELECT pg_is_in_recovery() AS standby,
       pg_postmaster_start_time()::text AS started,
       (SELECT system_identifier::text FROM pg_control_system()) AS cluster,
       current_database() AS database,
       (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS "databaseOid",
       $1::pg_lsn IS NULL OR coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS "caughtUp",
       pg_last_wal_replay_lsn()::text AS replayed,
       current_user AS "user",
       ARRAY(SELECT t FROM pg_catalog.unnest($2::text[]) AS t
             WHERE to_regclass(t) IS NULL OR NOT has_table_privilege(t, 'SELECT')) AS unreadable`;

interface ReaderState extends Identity {
  standby: boolean;
  started: string;
  caughtUp: boolean;
  /** pg_last_wal_replay_lsn(), as text; null on a server not in recovery. */
  replayed: string | null;
  user: string;
  unreadable: string[];
}

export function standbyOnly(
  pool: PostgresPool,
  {
    writerState,
    checkEveryMs = 5_000,
    maxLagMs = MAX_REPLICA_LAG_MS,
    clock = () => performance.now(),
    logger,
    onLag,
  }: {
    /** DATABASE_URL's server now (WRITER_STATE_SQL); bounded in time by the caller. */
    writerState: () => Promise<WriterState>;
    checkEveryMs?: number;
    maxLagMs?: number;
    clock?: () => number;
    /** Told once when reads start being refused, and once when they are served again. */
    logger?: Logger;
    /** Told at each check how far behind the primary the server is, in seconds (lagSeconds). */
    onLag?: (seconds: number) => void;
  },
): PostgresPool {
  const checkedAt = new WeakMap<PostgresPoolClient, number>();
  // The primary's WAL positions, oldest first, one per ask of writerState.
  const samples: { at: number; lsn: string }[] = [];
  let writer: { at: number; state: Promise<WriterState> } | undefined;
  // Why reads are refused now; undefined while they are served.
  let refusal: string | undefined;

  const askWriter = (now: number): Promise<WriterState> => {
    if (writer && now - writer.at < checkEveryMs) return writer.state;
    const asked = { at: now, state: writerState() };
    writer = asked;
    asked.state.then(
      ({ lsn }) => {
        if (lsn !== null) samples.push({ at: asked.at, lsn });
      },
      () => {
        // Asked again at the next check, not after checkEveryMs.
        if (writer === asked) writer = undefined;
      },
    );
    return asked.state;
  };

  /** The newest position the primary had at least maxLagMs ago; older ones are let go. */
  const mustHaveReplayed = (now: number): string | null => {
    while (samples.length > 1 && now - samples[1]!.at >= maxLagMs) samples.shift();
    const oldest = samples[0];
    return oldest && now - oldest.at >= maxLagMs ? oldest.lsn : null;
  };

  // What DATABASE_URL's server said last. Once there is one, a check is judged by it at once
  // and the primary asked again in the background: a primary that stops answering (an outage,
  // a partition: exactly when a replica's reads matter most) would otherwise hold every check,
  // and every read behind it, for the ask's whole deadline. The lag is then judged by the
  // primary's last positions, which a standby that followed it has replayed.
  let known: WriterState | undefined;
  const primaryState = async (now: number): Promise<WriterState> => {
    if (known !== undefined) {
      askWriter(now).then(
        (state) => {
          known = state;
        },
        () => undefined,
      );
      return known;
    }
    known = await askWriter(now);
    return known;
  };

  /**
   * How long ago the primary was where the standby has replayed to: found between the two
   * samples that bracket `replayed`, in proportion to the WAL written between them (the primary
   * passed that position at about that point of the interval), 0 when it has replayed every
   * sample. The age of the first sample past it alone was short by up to a whole sampling
   * interval: with only scrapes (every 30 s) asking, a standby 45 s behind read 30. Judged by
   * position like the refusal, so an idle primary's standby is not "behind"; samples older than
   * maxLagMs are let go, so with none at or below `replayed` left it reads the oldest sample's
   * age (past maxLagMs: reads are refused by then anyway).
   */
  const lagSeconds = (replayed: string, now: number): number => {
    const position = lsnValue(replayed);
    const after = samples.findIndex((sample) => lsnValue(sample.lsn) > position);
    if (after === -1) return 0;
    const next = samples[after]!;
    const before = samples[after - 1];
    if (before === undefined) return (now - next.at) / 1_000;
    const written = Number(lsnValue(next.lsn) - lsnValue(before.lsn));
    const share = Number(position - lsnValue(before.lsn)) / written;
    return (now - (before.at + share * (next.at - before.at))) / 1_000;
  };

  const judge = async (client: PostgresPoolClient, now: number): Promise<string | undefined> => {
    const primary = await primaryState(now);
    const { rows } = await client.query<ReaderState>(READER_STATE_SQL, [
      mustHaveReplayed(now),
      [...READ_TABLES],
    ]);
    const server = rows[0];
    if (server === undefined) return NOT_A_STANDBY;
    if (server.cluster !== primary.cluster || server.databaseOid !== primary.databaseOid) {
      return notSameDatabase(server, primary);
    }
    if (server.standby) {
      if (server.replayed !== null) onLag?.(lagSeconds(server.replayed, now));
    } else if (server.started === primary.started) {
      // DATABASE_URL's own server is never behind itself.
      onLag?.(0);
    }
    if (server.unreadable.length > 0) return notReadable(server.user, server.unreadable);
    if (!server.standby) return server.started === primary.started ? undefined : NOT_A_STANDBY;
    return server.caughtUp ? undefined : notFollowing(maxLagMs);
  };

  const changed = (now: string | undefined): void => {
    if (now === refusal) return;
    if (now !== undefined)
      logger?.warn({ reason: now }, 'read replica refused: its reads answer 503');
    else logger?.info('read replica follows DATABASE_URL again: its reads are served');
    refusal = now;
  };

  return {
    async connect(): Promise<PostgresPoolClient> {
      const client = await pool.connect();
      const now = clock();
      if (now - (checkedAt.get(client) ?? -Infinity) < checkEveryMs) return client;
      let refused: string | undefined;
      try {
        refused = await judge(client, now);
      } catch (error) {
        client.release();
        throw error;
      }
      changed(refused);
      if (refused !== undefined) {
        client.release();
        throw new Error(refused);
      }
      checkedAt.set(client, now);
      return client;
    },
    end: () => pool.end(),
  };
}

/** A WAL position (`16/B374D848`) as a number that orders like it. */
function lsnValue(lsn: string): bigint {
  const [high = '0', low = '0'] = lsn.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}
