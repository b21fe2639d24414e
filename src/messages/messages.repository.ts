import { sql } from 'kysely';
import type { Selectable } from 'kysely';
import { jsonArrayFrom } from 'kysely/helpers/postgres';
import type { Database, Db, StatusEventsTable } from '../db/database';
import { epochMilliseconds } from '../db/json-timestamps';
import type { Api } from './statuses';

/**
 * The read side of `messages` and `status_events`; the write path is
 * record-events.repository.ts (the sweep columns are reconcile.repository.ts's, removal
 * retention.repository.ts's). Functions take `db` first and work the same on a transaction.
 */

/**
 * A message as read: its columns, and `applied_tx` (xid8, as text), the last transaction that
 * recorded an event for it — written by RECORD_BATCH's SQL alone, so not a column Kysely knows
 * (src/db/database.ts), but read with the row as its version for ETags.
 */
export type MessageRow = Selectable<Database['messages']> & { applied_tx: string };

export type HistoryRow = Pick<
  Selectable<StatusEventsTable>,
  | 'seq'
  | 'status'
  | 'raw_status'
  | 'error_code'
  | 'error_message'
  | 'source'
  | 'provider_timestamp'
  | 'received_at'
>;

/** MessageRow's `applied_tx`, selected beside the row's columns. */
const appliedTx = sql<string>`messages.applied_tx::text`.as('applied_tx');

// The history's timestamps, read inside JSON: as numbers (db/json-timestamps.ts).
const providerTimestampMs = sql<
  number | null
>`${sql.raw(epochMilliseconds('provider_timestamp'))}`.as('provider_timestamp');
const receivedAtMs = sql<number>`${sql.raw(epochMilliseconds('received_at'))}`.as('received_at');

/**
 * A message with its history in arrival order (seq is an identity: the commit order of the
 * events), in one round trip; undefined when the message is unknown.
 */
export async function findMessageWithHistory(
  db: Db,
  id: string,
): Promise<{ message: MessageRow; history: HistoryRow[] } | undefined> {
  const row = await db
    .selectFrom('messages')
    .selectAll('messages')
    .select(appliedTx)
    .select((eb) =>
      jsonArrayFrom(
        eb
          .selectFrom('status_events')
          .select([
            'seq',
            'status',
            'raw_status',
            'error_code',
            'error_message',
            'source',
            providerTimestampMs,
            receivedAtMs,
          ])
          .whereRef('status_events.message_id', '=', 'messages.id')
          .orderBy('seq'),
      ).as('history'),
    )
    .where('messages.id', '=', id)
    .executeTakeFirst();
  if (!row) return undefined;
  const { history, ...message } = row;
  return {
    message,
    history: history.map((event) => ({
      ...event,
      provider_timestamp:
        event.provider_timestamp === null ? null : new Date(event.provider_timestamp),
      received_at: new Date(event.received_at),
    })),
  };
}

export interface MessageFilter {
  statuses?: readonly string[];
  to?: readonly string[];
  from?: readonly string[];
  apis?: readonly Api[];
  errorCodes?: readonly string[];
  /** [since, until) on the last activity. */
  since?: Date;
  until?: Date;
  /** [createdSince, createdUntil) on the first-seen time. */
  createdSince?: Date;
  createdUntil?: Date;
  /** Reconciliation's stuck messages only (DESIGN §11); index messages_stuck_idx. */
  stuck?: boolean;
}

/**
 * `activity`: newest activity first, on (last_event_at, id) — a message that changes during a
 * walk moves to the front, behind the walk (last_event_at never decreases): one the walk already
 * returned is not returned again, in its new state; one it had not reached yet is not returned
 * at all (follow the change feed for changes). `created`: newest first-seen first, on
 * (created_at, id), which never changes: a walk sees every message that existed when it began
 * exactly once.
 */
export type ListOrder = 'activity' | 'created';

/** The sort key of the last row of a page. */
export interface ListCursor {
  at: Date;
  id: string;
}

/**
 * The filters with an index on (column, last_event_at, id), most selective kind first: the one
 * that drives a multi-value page (below). `api` last, two values: messages_api_idx (0017; the
 * created order has messages_api_created_idx) serves a deployment that uses one API almost
 * entirely, where a page of the other API walked every message of the common one.
 */
const DRIVING_FILTERS = [
  ['to', 'to'],
  ['from', 'from'],
  ['errorCodes', 'error_code'],
  ['statuses', 'status'],
  ['apis', 'api'],
] as const;

/**
 * Keyset-paginated in the given order: every single-value filter has an index ending in the
 * activity key (messages_created_idx serves the created order), so a page is an index range
 * scan however deep the client pages.
 *
 * A multi-value filter (`status IN (a, b)`) has no index in that order: PostgreSQL would walk
 * messages_activity_idx from the newest message and filter each, the whole table when few
 * match. In the activity order such a page is a UNION ALL of one branch per value of the most
 * selective indexed filter given (`status = a`, `status = b`, each with every other filter),
 * each the first page of one index range, reading only what the page needs. A message has one
 * value of a column, so the branches are disjoint.
 */
export async function listMessages(
  db: Db,
  filter: MessageFilter,
  limit: number,
  { order = 'activity', after }: { order?: ListOrder; after?: ListCursor } = {},
): Promise<MessageRow[]> {
  const key = order === 'created' ? 'created_at' : 'last_event_at';
  if (order === 'activity' && (await readsWindowFirst(db, filter, after))) {
    // The window's messages, found through messages_created_idx (MATERIALIZED keeps PostgreSQL
    // from folding the window into an activity walk again), then ordered.
    return db
      .with(
        (cte) => cte('w').materialized(),
        () => filtered(db, filter, order, after),
      )
      .selectFrom('w')
      .selectAll()
      .orderBy('last_event_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
  }
  // The most selective filter given drives; when it has one value it is already one index
  // range (a single-value `to` is narrower than any status's), and the created order has no
  // per-column index to merge.
  const driving = DRIVING_FILTERS.find(([field]) => filter[field]?.length);
  const values = driving ? [...new Set(filter[driving[0]])] : [];
  if (order === 'created' || !driving || values.length < 2) {
    return filtered(db, filter, order, after)
      .orderBy(key, 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
  }
  const [field, column] = driving;
  const rest = { ...filter, [field]: undefined };
  // Each branch its own page (ORDER BY … LIMIT inside a subquery): plain branches are flattened
  // and PostgreSQL 15 appended and sorted every matching row (Append → Sort in EXPLAIN), while a
  // branch with a LIMIT reads its index in order and stops after `limit` matching rows; the outer
  // ORDER BY merges the branches (Merge Append).
  const branches = values.map((value) =>
    db
      .selectFrom(
        filtered(db, rest, order, after)
          .where(column, '=', value)
          .orderBy('last_event_at', 'desc')
          .orderBy('id', 'desc')
          .limit(limit)
          .as('branch'),
      )
      .selectAll(),
  );
  const union = branches.slice(1).reduce((all, branch) => all.unionAll(branch), branches[0]!);
  return db
    .selectFrom(union.as('m'))
    .selectAll()
    .orderBy('last_event_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

/** How many rows readsWindowFirst counts at most on each side. */
const WINDOW_COUNT_CAP = 5_000;

/**
 * Whether a first-seen window (`created_since`/`created_until`) in the activity order is read
 * window first. Walking the activity order, as any other filter is, reads from the newest
 * activity down until the page is full, and a message's activity mostly follows its first
 * sighting closely: the walk passes every message active since the window ended before it
 * reaches most of the window's own — none for a window that is still open, every message since
 * for a day long ago (whose handful of late receipts or lookups keep it from being skipped). No
 * index holds first sighting in the activity order, and PostgreSQL cannot tell the two cases
 * apart (the columns' correlation is in no statistic), so it is counted here, each side through
 * its index and at most WINDOW_COUNT_CAP (a few milliseconds): the window's messages against
 * those the walk passes after the window's end. Fewer in the window: it is read whole and
 * sorted. Otherwise the walk runs as before — which leaves a window larger than the cap far
 * back walking; README says to ask it with `order=created`.
 */
async function readsWindowFirst(
  db: Db,
  filter: MessageFilter,
  after: ListCursor | undefined,
): Promise<boolean> {
  const { createdSince, createdUntil } = filter;
  // An open window ends now: the walk starts in it.
  if (!createdUntil) return false;
  let window = db
    .selectFrom('messages')
    .select(sql<number>`1`.as('one'))
    .where('created_at', '<', createdUntil);
  if (createdSince) window = window.where('created_at', '>=', createdSince);
  // What messages_activity_idx's walk passes before the window's end: from the cursor (or the
  // newest) down to the window's end, within the activity window.
  let passed = db
    .selectFrom('messages')
    .select(sql<number>`1`.as('one'))
    .where('last_event_at', '>=', createdUntil);
  if (filter.since) passed = passed.where('last_event_at', '>=', filter.since);
  if (filter.until) passed = passed.where('last_event_at', '<', filter.until);
  if (after) {
    passed = passed.where((eb) =>
      eb(eb.refTuple('last_event_at', 'id'), '<', eb.tuple(after.at, after.id)),
    );
  }
  const { rows } = await sql<{ window_first: boolean }>`
    SELECT (SELECT count(*) FROM (${window.limit(WINDOW_COUNT_CAP + 1)}) w)
         < (SELECT count(*) FROM (${passed.limit(WINDOW_COUNT_CAP + 1)}) p) AS window_first`.execute(
    db,
  );
  return rows[0]?.window_first === true;
}

/** The page's rows, unordered: every filter, the cursor, and the bounds they imply. */
function filtered(db: Db, filter: MessageFilter, order: ListOrder, after: ListCursor | undefined) {
  const key = order === 'created' ? 'created_at' : 'last_event_at';
  let query = db.selectFrom('messages').selectAll().select(appliedTx);
  if (filter.statuses?.length) query = query.where('status', 'in', filter.statuses);
  if (filter.to?.length) query = query.where('to', 'in', filter.to);
  if (filter.from?.length) query = query.where('from', 'in', filter.from);
  if (filter.apis?.length) query = query.where('api', 'in', filter.apis);
  if (filter.errorCodes?.length) query = query.where('error_code', 'in', filter.errorCodes);
  if (filter.since) query = query.where('last_event_at', '>=', filter.since);
  if (filter.until) query = query.where('last_event_at', '<', filter.until);
  if (filter.createdSince) query = query.where('created_at', '>=', filter.createdSince);
  if (filter.createdUntil) query = query.where('created_at', '<', filter.createdUntil);
  // A message's last activity is never before its first sighting (projection.ts: created_at is
  // the first event's arrival and never moves; last_event_at only moves forward from it). So a
  // bound on one time bounds the other the same way, which lets the index of the sort key
  // start (or stop) its walk at the window instead of filtering everything before it.
  if (order === 'created' && filter.until) query = query.where('created_at', '<', filter.until);
  if (order === 'activity' && filter.createdSince) {
    query = query.where('last_event_at', '>=', filter.createdSince);
  }
  // The stuck filter (src/reconcile).
  if (filter.stuck !== undefined) query = query.where('stuck', '=', filter.stuck);
  if (after) {
    query = query.where((eb) => eb(eb.refTuple(key, 'id'), '<', eb.tuple(after.at, after.id)));
  }
  return query;
}
