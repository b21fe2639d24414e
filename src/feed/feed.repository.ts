import { sql } from 'kysely';
import type { Db } from '../db/database';
import { preparedStatement } from '../db/kysely-pool';
import { READ_STATEMENT_TIMEOUT_MS, markedAsRead, readWithin } from '../db/read-timeout';
import { applyEvent } from '../messages/projection';
import type { MessageState } from '../messages/projection';
import type { StatusEvent } from '../messages/status-event';
import type { Api, CanonicalStatus, EventSource } from '../messages/statuses';
import { comparePositions } from './feed-cursor';
import type { FeedPosition } from './feed-cursor';

/**
 * The change feed's reads. Order: (tx, seq) — the writing transaction's id (xid8, stamped by
 * the column default) then the event's seq. A page holds only events whose transaction id is
 * below the snapshot's xmin: every transaction with a lower id has ended, so no event can
 * ever appear behind a position a consumer has passed (RESEARCH.md §1.2). An identity or a
 * timestamp alone is not enough: both are taken before the commit, so a later commit can
 * carry a lower value. The bound and the rows must come from ONE snapshot, hence one
 * statement.
 *
 * What pauses the feed: any transaction with an id (one that has written) open anywhere on
 * the cluster holds xmin back, and events committed after it started are delivered only once
 * it ends — a long migration, a forgotten `BEGIN` in psql, a prepared transaction. Reads
 * without writes do not. sw_status_feed_lag_seconds reports the oldest such transaction.
 */

export interface FeedFilter {
  statuses?: readonly string[];
  apis?: readonly string[];
}

export interface FeedRow {
  seq: number;
  tx: string;
  message_id: string;
  api: Api;
  status: CanonicalStatus;
  raw_status: string;
  error_code: string | null;
  error_message: string | null;
  source: EventSource;
  provider_timestamp: Date | null;
  received_at: Date;
  message_status: string;
}

export interface FeedPage {
  rows: FeedRow[];
  /** Events looked at (matching the filter or not) and the last of them. */
  scanned: number;
  lastScanned: FeedPosition | null;
  /** The snapshot's xmin: every event below it that exists was looked at or is behind. */
  horizon: string;
  /**
   * The snapshot's xmax: the first transaction id the cluster had not issued yet. Every
   * position this cluster gives out lies at or below it, and a primary's only grows: a cursor
   * beyond it comes from elsewhere — another deployment, or this database before a restore
   * (ids restart lower) or a failover that lost transactions — and events committed from now
   * on can carry ids below it (src/feed/feed.routes.ts refuses it).
   */
  issuedBefore: string;
  /** Read on a hot standby: its xmax trails the primary's by the replay delay. */
  standby: boolean;
  /** The newest event retention removed, as the same snapshot saw it (src/retention). */
  removedThrough: FeedPosition;
  /**
   * Retention's removal steps as the same snapshot saw them (sw_status_feed_removals, oldest
   * step first): each step's number and the newest event it removed, for the steps that can
   * still matter to a cursor (db/migrations/0013) — a few at most.
   */
  removalSteps: RemovalStep[];
}

export interface RemovalStep {
  step: number;
  removed: FeedPosition;
}

/**
 * One page as one statement (see above), prepared once per connection: dashboards poll it
 * constantly, and parsing and planning this text cost as much as running it. The summary also
 * carries what retention removed (sw_status_retention's mark and the sw_status_feed_removals
 * steps, a row or a few each), read in the page's own snapshot: a cursor behind a removal
 * made after it has missed events (410 cursor_expired) — one round trip, not two. The steps
 * go as they are, not judged against a cursor's here: the page stays the same for every
 * consumer at the same position, which share one read (feed-reads.ts).
 *
 * It carries the snapshot's xmax too, against which the route checks a cursor it is given
 * (beyond it: not this cluster's), again without a round trip of its own.
 *
 * The summary is a row of its own, first (its `tx` is NULL), rather than columns repeated on
 * every event: decoding those 600 repeated values took a tenth of the server's time per page.
 * `tx` leaves as xid8, which node-postgres hands over as its text.
 */
const FEED_PAGE = preparedStatement(
  'sw_status_feed_page',
  `WITH horizon AS MATERIALIZED (
     SELECT pg_snapshot_xmin(snapshot) AS xmin, pg_snapshot_xmax(snapshot) AS xmax
     FROM pg_current_snapshot() snapshot
   ), scanned AS MATERIALIZED (
     SELECT seq, tx, message_id, api, status, raw_status, error_code, error_message, source,
            provider_timestamp, received_at, message_status
     FROM status_events
     WHERE (tx, seq) > ($1::xid8, $2::bigint)
       AND tx < (SELECT xmin FROM horizon)
     ORDER BY tx, seq
     LIMIT $3::int
   ), page AS (
     SELECT * FROM scanned
     WHERE ($4::text[] IS NULL OR status = ANY($4::text[]))
       AND ($5::text[] IS NULL OR api = ANY($5::text[]))
     ORDER BY tx, seq
     LIMIT $6::int
   ), summary AS (
     SELECT (SELECT xmin FROM horizon)::text AS horizon,
            (SELECT xmax FROM horizon)::text AS issued_before, pg_is_in_recovery() AS standby,
            (SELECT count(*) FROM scanned) AS scanned,
            last.tx::text AS last_tx, last.seq AS last_seq,
            removed.removed_tx::text AS removed_tx, removed.removed_seq,
            (SELECT json_agg(json_build_array(step, removed_tx::text, removed_seq) ORDER BY step)
               FROM sw_status_feed_removals) AS removal_steps
     FROM (SELECT 1) one
     LEFT JOIN (SELECT tx, seq FROM scanned ORDER BY tx DESC, seq DESC LIMIT 1) last ON true
     LEFT JOIN sw_status_retention removed ON true
   )
   SELECT horizon, issued_before, standby, scanned, last_tx, last_seq, removed_tx, removed_seq,
          removal_steps,
          NULL::bigint AS seq, NULL::xid8 AS tx, NULL::text AS message_id, NULL::text AS api,
          NULL::text AS status, NULL::text AS raw_status, NULL::text AS error_code,
          NULL::text AS error_message, NULL::text AS source,
          NULL::timestamptz AS provider_timestamp, NULL::timestamptz AS received_at,
          NULL::text AS message_status
   FROM summary
   UNION ALL
   SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, seq, tx, message_id, api,
          status, raw_status, error_code, error_message, source, provider_timestamp,
          received_at, message_status
   FROM page
   ORDER BY tx NULLS FIRST, seq`,
);

/**
 * Up to `limit` events after `after` that match the filter, looking at no more than `scanLimit`
 * events (a rare status must not make one request read the whole history).
 *
 * Read as the query API's other reads are (read-timeout.ts readWithin): cancelled by the server
 * after READ_STATEMENT_TIMEOUT_MS, given up on by the client a margin later. Without
 * DATABASE_READ_URL they share the writer's pool, which has no query_timeout: a primary that
 * stopped answering on open connections left a page read (and its turn of feed-reads.ts)
 * waiting for TCP keepalive. And the server's own timeout must come first: a read waiting for a
 * lock (a migration's ALTER TABLE queued on status_events) that only the client gave up on
 * stays in the lock queue — PostgreSQL does not see the closed socket — while its turn goes to
 * the next read on a new connection, one more every few seconds. Far above any page's time.
 */
export async function readFeedPage(
  db: Db,
  after: FeedPosition,
  filter: FeedFilter,
  limit: number,
  scanLimit: number,
): Promise<FeedPage> {
  return readWithin(db, READ_STATEMENT_TIMEOUT_MS, (trx) =>
    readFeedPageIn(trx, after, filter, limit, scanLimit),
  );
}

async function readFeedPageIn(
  db: Db,
  after: FeedPosition,
  filter: FeedFilter,
  limit: number,
  scanLimit: number,
): Promise<FeedPage> {
  const statuses = filter.statuses?.length ? [...filter.statuses] : null;
  const apis = filter.apis?.length ? [...filter.apis] : null;
  const { rows } = await db.executeQuery<
    Omit<FeedRow, 'message_status'> & {
      message_status: string | null;
      horizon: string;
      issued_before: string;
      standby: boolean;
      scanned: string;
      last_tx: string | null;
      last_seq: number | null;
      removed_tx: string | null;
      removed_seq: number | null;
      // [step, tx, seq] per step; null when there are none.
      removal_steps: Array<[number, string, number]> | null;
    }
  >(FEED_PAGE([after.tx, after.seq, scanLimit, statuses, apis, limit]));
  const summary = rows.find((row) => row.seq === null)!;
  const events = rows.filter((row) => row.seq !== null);
  return {
    rows: await withMessageStatus(db, events),
    scanned: Number(summary.scanned),
    lastScanned:
      summary.last_tx === null ? null : { tx: summary.last_tx, seq: Number(summary.last_seq) },
    horizon: summary.horizon,
    issuedBefore: summary.issued_before,
    standby: summary.standby,
    removedThrough: { tx: summary.removed_tx ?? '0', seq: Number(summary.removed_seq ?? 0) },
    removalSteps: (summary.removal_steps ?? []).map(([step, tx, seq]) => ({
      step,
      removed: { tx, seq },
    })),
  };
}

/** The current end of the feed: a position every event committed from now on comes after. */
export async function feedEnd(db: Db): Promise<FeedPosition> {
  // No table, no lock to wait for: only the client's bound (a primary that stopped answering).
  const { rows } = await db.executeQuery(
    markedAsRead(
      sql<{ horizon: string }>`
        SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon`.compile(db),
    ),
  );
  return { tx: rows[0]!.horizon, seq: 0 };
}

/**
 * Events stored before migration 0003 (or by a replica of an older version during a rolling
 * upgrade) carry no message_status: it is the projection's fold over the message's events in
 * feed order, up to and including this one.
 */
async function withMessageStatus(
  db: Db,
  rows: ReadonlyArray<Omit<FeedRow, 'message_status'> & { message_status: string | null }>,
): Promise<FeedRow[]> {
  const missing = [
    ...new Set(rows.filter((r) => r.message_status === null).map((r) => r.message_id)),
  ];
  if (missing.length === 0) return rows as FeedRow[];
  const { rows: history } = await sql<Omit<FeedRow, 'message_status'>>`
    SELECT seq, tx::text AS tx, message_id, api, status, raw_status, error_code, error_message,
           source, provider_timestamp, received_at
    FROM status_events WHERE message_id = ANY(${missing}::text[])`.execute(db);
  const statusAfter = new Map<number, string>();
  const byMessage = new Map<string, Array<Omit<FeedRow, 'message_status'>>>();
  for (const event of history) {
    const events = byMessage.get(event.message_id) ?? [];
    events.push(event);
    byMessage.set(event.message_id, events);
  }
  for (const events of byMessage.values()) {
    events.sort(comparePositions);
    let state: MessageState | null = null;
    for (const event of events) {
      state = applyEvent(state, asStatusEvent(event));
      statusAfter.set(event.seq, state.status);
    }
  }
  return rows.map((row) => ({
    ...row,
    message_status: row.message_status ?? statusAfter.get(row.seq) ?? row.status,
  }));
}

function asStatusEvent(row: Omit<FeedRow, 'message_status'>): StatusEvent {
  return {
    messageId: row.message_id,
    api: row.api,
    source: row.source,
    projectId: null,
    status: row.status,
    rawStatus: row.raw_status,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    from: null,
    to: null,
    numSegments: null,
    numMedia: null,
    providerTimestamp: row.provider_timestamp,
    receivedAt: row.received_at,
    raw: {},
  };
}
