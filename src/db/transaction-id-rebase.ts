import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { Logger } from '../logger';
import { NEVER_ISSUED_TX } from './removal-steps';

/**
 * Transaction ids stored as data, after a logical move of the database.
 *
 * Every event keeps the id of the transaction that wrote it (`status_events.tx`, the change
 * feed's position), every message the id of the last one that applied events to it
 * (`messages.applied_tx`: a transaction updates the message only when its own id is higher),
 * and retention the position of the newest event it removed (`sw_status_retention.removed_tx`).
 * A physical copy (a replica, a base backup, PITR) keeps the cluster's transaction counter with
 * them. A logical one does not: after pg_dump and a restore into another cluster (a move to a
 * managed PostgreSQL, a major-version upgrade by dump), the new cluster issues ids far below
 * the stored ones. Until its counter catches up — months, on a quiet cluster — every callback
 * for a message written before the move is refused as a conflict with "a later transaction",
 * and then the restored events re-enter the change feed as new.
 *
 * Such ids are recognised by lying at or beyond the cluster's next transaction id (the
 * snapshot's xmax): no transaction of this cluster has had one yet. The rebase moves them to 0,
 * where the events from before migration 0003 already are: first in the feed, in seq order,
 * below every position this cluster hands out (a consumer from `after=now` never sees them),
 * and below every transaction for `applied_tx`'s comparison (the next callback applies).
 */

/** The newest event's transaction id, and the cluster's next one, when the first is not below. */
export interface TransactionIdsAhead {
  newestTx: string;
  nextTx: string;
}

/**
 * Whether the stored transaction ids come from another cluster: the newest event's id at or
 * beyond this cluster's next one. One backward step on status_events_feed_idx (tx, seq); the
 * messages are not looked at, their ids are never above their events' by more than the few
 * transactions that touched a message without adding an event. Null, too, on a schema without
 * the column (not migrated yet: the migrations say so first).
 */
export async function transactionIdsAhead<T>(db: Kysely<T>): Promise<TransactionIdsAhead | null> {
  const { rows } = await sql<{ newest_tx: string; next_tx: string }>`
    SELECT newest.tx::text AS newest_tx, next.tx::text AS next_tx
    FROM (SELECT tx FROM status_events ORDER BY tx DESC LIMIT 1) newest,
         (SELECT pg_snapshot_xmax(pg_current_snapshot()) AS tx) next
    WHERE newest.tx >= next.tx`
    .execute(db)
    .catch((error: unknown) => {
      const code = (error as { code?: unknown }).code;
      if (code === UNDEFINED_TABLE || code === UNDEFINED_COLUMN) return { rows: [] };
      throw error;
    });
  const row = rows[0];
  return row ? { newestTx: row.newest_tx, nextTx: row.next_tx } : null;
}

const UNDEFINED_TABLE = '42P01';
const UNDEFINED_COLUMN = '42703';

export interface RebaseCounts {
  events: number;
  messages: number;
  /** Rows of other tables (retention's removed positions). */
  other: number;
}

export interface RebaseOptions {
  logger?: Pick<Logger, 'info'>;
  /** Rows per statement (each its own short transaction). */
  batchSize?: number;
}

/**
 * Moves every stored transaction id that lies at or beyond this cluster's next one to 0, in
 * statements of `batchSize` rows, each committed on its own: no long lock, no transaction
 * holding the feed back (the feed reads only below the oldest open one) for the minutes a large
 * table takes. Does nothing (one index probe) unless transactionIdsAhead finds such ids; returns
 * what it moved, or null when there was nothing to do.
 *
 * Every statement compares with its own snapshot's xmax: an id this cluster issues is below the
 * xmax of every later snapshot, so a callback stored meanwhile is never moved. Killed half-way,
 * it runs again from the top and moves what is left: retention's rows first, then the messages
 * (one pass over the primary key), then the events, the ones detection looks at, last — until
 * they are done the next run still finds the database restored.
 */
export async function rebaseTransactionIds<T>(
  db: Kysely<T>,
  { logger, batchSize = 10_000 }: RebaseOptions = {},
): Promise<RebaseCounts | null> {
  const ahead = await transactionIdsAhead(db);
  if (!ahead) return null;
  logger?.info(
    { newest_tx: ahead.newestTx, next_tx: ahead.nextTx },
    `stored transaction ids (up to ${ahead.newestTx}) lie beyond this cluster's next one ` +
      `(${ahead.nextTx}): the database was restored from a dump or moved from another cluster; ` +
      'moving them to 0',
  );
  const started = Date.now();
  const counts: RebaseCounts = { events: 0, messages: 0, other: 0 };
  // Every other column of type xid8 (retention's removed positions: one row, a few), found in
  // the catalogue so that one a later migration adds is not forgotten; each in one statement.
  // Not a feed reset's position (NEVER_ISSUED_TX, src/feed/feed-epoch.ts): no cluster issues
  // it, and at 0 the reset would no longer refuse the cursors from before it.
  const { rows: others } = await sql<{ table: string; column: string }>`
    SELECT c.table_name AS table, c.column_name AS column
    FROM information_schema.columns c
    JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
    WHERE c.table_schema = current_schema() AND c.udt_name = 'xid8'
      AND t.table_type = 'BASE TABLE' AND c.table_name NOT IN ('status_events', 'messages')
    ORDER BY 1, 2`.execute(db);
  for (const { table, column } of others) {
    const { rows } = await sql`
      UPDATE ${sql.table(table)} SET ${sql.ref(column)} = '0'
      WHERE ${sql.ref(column)} >= pg_snapshot_xmax(pg_current_snapshot())
        AND ${sql.ref(column)} <> ${NEVER_ISSUED_TX}::xid8
      RETURNING 1`.execute(db);
    counts.other += rows.length;
  }

  let progressAt = started + PROGRESS_EVERY_MS;
  const progress = (): void => {
    if (!logger || Date.now() < progressAt) return;
    progressAt = Date.now() + PROGRESS_EVERY_MS;
    logger.info(
      { ...counts },
      `moving transaction ids to 0: ${counts.messages} messages, ${counts.events} events so far`,
    );
  };

  // applied_tx has no index: the messages are walked once along their primary key.
  for (let after: string | null = ''; after !== null; progress()) {
    const { rows } = await sql<{ last: string | null; moved: number }>`
      WITH batch AS (
        SELECT id FROM messages WHERE id > ${after} ORDER BY id LIMIT ${batchSize}
      ), moved AS (
        UPDATE messages m SET applied_tx = '0' FROM batch
        WHERE m.id = batch.id AND m.applied_tx >= pg_snapshot_xmax(pg_current_snapshot())
        RETURNING 1
      )
      SELECT (SELECT max(id) FROM batch) AS last, (SELECT count(*) FROM moved)::int AS moved`.execute(
      db,
    );
    counts.messages += rows[0]?.moved ?? 0;
    after = rows[0]?.last ?? null;
  }

  // The events that are ahead are found on status_events_feed_idx; a moved one leaves that
  // range. Until a batch moves none: a row another statement changed meanwhile and left ahead
  // is for the next run, which detection asks for.
  for (let moved = -1; moved !== 0; progress()) {
    const { rows } = await sql<{ moved: number }>`
      WITH batch AS (
        SELECT seq FROM status_events
        WHERE tx >= pg_snapshot_xmax(pg_current_snapshot())
        ORDER BY tx, seq LIMIT ${batchSize}
      ), moved AS (
        UPDATE status_events e SET tx = '0' FROM batch
        WHERE e.seq = batch.seq AND e.tx >= pg_snapshot_xmax(pg_current_snapshot())
        RETURNING 1
      )
      SELECT count(*)::int AS moved FROM moved`.execute(db);
    moved = rows[0]?.moved ?? 0;
    counts.events += moved;
  }
  logger?.info(
    { ...counts, ms: Date.now() - started },
    `moved the transaction ids of ${counts.events} events and ${counts.messages} messages` +
      `${counts.other > 0 ? ` (and ${counts.other} in other tables)` : ''} to 0 ` +
      `(${Date.now() - started} ms): the database is usable on this cluster; change-feed ` +
      'consumers start again from after=now',
  );
  return counts;
}

// A rebase of a large table takes minutes: an operator watching the Job sees it move.
const PROGRESS_EVERY_MS = 30_000;
