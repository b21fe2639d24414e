import type { Db, MessagesTable } from '../db/database';
import { epochMilliseconds } from '../db/json-timestamps';
import { IN_OUR_TRANSACTION, lastInTransaction, preparedStatement } from '../db/kysely-pool';
import type { MessageRow } from './messages.repository';
import type { MessageState } from './projection';
import { deltaRow } from './rollup';
import type { RollupDelta } from './rollup';
import type { StatusEvent } from './status-event';
import { TERMINAL_STATUSES } from './statuses';

/**
 * The SQL of the write path (messages/record-events.ts runs it in one transaction).
 *
 * - Fixed texts, prepared once per connection (db/kysely-pool.ts), and a batch travels
 *   as one array parameter per column, zipped back into rows by unnest: a VALUES list would
 *   bind a parameter per column and row (2,200 for a batch of 200) and change its text with
 *   every batch size. Arrays rather than one JSON document of rows: json_to_recordset builds a
 *   hash table of field names for every row, a fifth of PostgreSQL's CPU on this path, and
 *   reading arrays by position costs it less than half as much per row (docs/scaling.md).
 *   Timestamps travel as epoch milliseconds, dedupe keys as hex, raw payloads as one JSON
 *   array (already JSON: no second layer of escaping).
 * - Every row is found through INSERT … ON CONFLICT on a unique index, never through a join
 *   or `id = ANY(…)`: a prepared statement keeps the plan it was given, and one planned
 *   while `messages` was still tiny would scan the whole table by then (seen: a batch of 14
 *   took 7 ms at 28,000 messages).
 * - Each round trip holds the connection and its row locks while it waits for the event loop:
 *   a batch takes two (BEGIN pipelined with RECORD_BATCH, then COMMIT), three when it moves
 *   messages that already existed (SAVE_FOLD before the COMMIT).
 * - What the feed and the stats need rides in those statements as CTE parts of their own:
 *   each event's `message_status`, the message's `applied_tx`, and the rollup deltas
 *   (db/migrations/0003; appended, so concurrent batches never wait on a shared rollup row).
 */

/** A column as it travels: its name and its SQL type (one array parameter of that type). */
type Column<Name extends string> = readonly [name: Name, type: string];

// Every column of `messages` with its type, in table order: the shape of a message row.
// Timestamps travel as epoch milliseconds (double precision): turning Date objects into text
// cost the server more than the rest of the row.
const MESSAGE_COLUMNS: ReadonlyArray<Column<keyof MessagesTable>> = [
  ['id', 'text'],
  ['api', 'text'],
  ['project_id', 'text'],
  ['from', 'text'],
  ['to', 'text'],
  ['kind', 'text'],
  ['body', 'text'],
  ['status', 'text'],
  ['raw_status', 'text'],
  ['status_rank', 'smallint'],
  ['status_provider_timestamp', 'timestamptz'],
  ['status_received_at', 'timestamptz'],
  ['error_code', 'text'],
  ['error_message', 'text'],
  ['conflict', 'boolean'],
  ['num_segments', 'integer'],
  ['num_media', 'integer'],
  ['ref', 'text'],
  ['sent_via_proxy', 'boolean'],
  ['client_status_callback', 'text'],
  ['created_at', 'timestamptz'],
  ['updated_at', 'timestamptz'],
  ['last_event_at', 'timestamptz'],
  ['first_terminal_at', 'timestamptz'],
];
const COLUMNS = MESSAGE_COLUMNS.map(([name]) => `"${name}"`).join(', ');
const MESSAGE_VALUES = MESSAGE_COLUMNS.map(
  ([name, type]) => `${fromWire(`m."${name}"`, type)} AS "${name}"`,
).join(', ');
const EXCLUDED = MESSAGE_COLUMNS.map(([name]) => `excluded."${name}"`).join(', ');
// An existing message as it comes back: JSON with its timestamps as epoch milliseconds
// (db/json-timestamps.ts: text in the session's TimeZone could not always be read back).
const EXISTING_JSON = `json_build_object(${MESSAGE_COLUMNS.map(
  ([name, type]) =>
    `'${name}', ${type === 'timestamptz' ? epochMilliseconds(`existing."${name}"`) : `existing."${name}"`}`,
).join(', ')})`;

// An event as it travels (eventRow below), and where it goes.
const EVENT_COLUMNS: ReadonlyArray<Column<keyof ReturnType<typeof eventRow>>> = [
  ['message_id', 'text'],
  ['api', 'text'],
  ['status', 'text'],
  ['raw_status', 'text'],
  ['error_code', 'text'],
  ['error_message', 'text'],
  ['source', 'text'],
  ['provider_timestamp', 'timestamptz'],
  ['received_at', 'timestamptz'],
  ['dedupe_key', 'text'],
  ['raw', 'jsonb'],
  ['message_status', 'text'],
];
const INSERT_EVENTS = `INSERT INTO status_events (message_id, api, status, raw_status, error_code,
     error_message, source, provider_timestamp, received_at, dedupe_key, raw, message_status)`;
const EVENT_VALUES = `message_id, api, status, raw_status, error_code, error_message, source,
     ${fromWire('provider_timestamp', 'timestamptz')}, ${fromWire('received_at', 'timestamptz')},
     decode(dedupe_key, 'hex'), raw, message_status`;

// A rollup delta as it travels (src/messages/rollup.ts; `minute` in epoch milliseconds), and
// where it goes.
const ROLLUP_COLUMNS: ReadonlyArray<Column<keyof ReturnType<typeof deltaRow>>> = [
  ['minute', 'double precision'],
  ['api', 'text'],
  ['status', 'text'],
  ['error_code', 'text'],
  ['latency_bucket', 'smallint'],
  ['messages', 'integer'],
  ['conflicts', 'integer'],
  ['final_within_10s', 'integer'],
];
const INSERT_ROLLUP = `INSERT INTO stats_deltas (minute, api, status, error_code, latency_bucket,
     messages, conflicts, final_within_10s)`;

/**
 * `unnest($first::type[], …) AS alias(column, …)`: the rows of one kind, zipped back from one
 * parameter per column (columnParameters below), the first of them $first. A jsonb column
 * travels as one JSON array, split back into its elements in their order.
 */
function unnestRows<Name extends string>(
  alias: string,
  columns: ReadonlyArray<Column<Name>>,
  first: number,
): string {
  const arrays = columns.map(([, type], i) =>
    type === 'jsonb'
      ? `ARRAY(SELECT v FROM jsonb_array_elements($${first + i}::jsonb) WITH ORDINALITY AS j(v, n) ORDER BY n)`
      : `$${first + i}::${wireType(type)}[]`,
  );
  const names = columns.map(([name]) => `"${name}"`);
  return `unnest(${arrays.join(', ')}) AS ${alias}(${names.join(', ')})`;
}

function wireType(type: string): string {
  return type === 'timestamptz' ? 'double precision' : type;
}

function fromWire(column: string, type: string): string {
  return type === 'timestamptz' ? `to_timestamp(${column} / 1000)` : column;
}

/**
 * Rows as one parameter per column, in `columns`' order: the parameters unnestRows reads. Each
 * is text written here rather than a JS array left to node-postgres, whose array encoding
 * costs the server's one thread twice as much; a jsonb column is a JSON array.
 */
function columnParameters<Row extends Record<Name, unknown>, Name extends string>(
  rows: readonly Row[],
  columns: ReadonlyArray<Column<Name>>,
): string[] {
  return columns.map(([name, type]) => {
    if (type === 'jsonb') return jsonText(rows.map((row) => row[name]));
    let literal = '';
    for (const row of rows) literal += `,${arrayElement(row[name])}`;
    return `{${literal.slice(1)}}`;
  });
}

/**
 * One element of an array literal. Text is always quoted, with `\` and `"` escaped — the only
 * characters special inside quotes — so no value can end its element early or read as NULL.
 * A number that JSON could not hold (NaN, Infinity) is NULL, as it was when rows travelled as
 * JSON.
 */
function arrayElement(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'string') return `"${value.replace(/[\\"]/g, '\\$&')}"`;
  if (typeof value === 'number' && !Number.isFinite(value)) return 'NULL';
  return String(value);
}

// Where each kind of row starts among a statement's parameters.
const RECORD_BATCH_EVENTS = 1;
const RECORD_BATCH_MESSAGES = RECORD_BATCH_EVENTS + EVENT_COLUMNS.length;
const RECORD_BATCH_LOCK = RECORD_BATCH_MESSAGES + MESSAGE_COLUMNS.length;
const SAVE_FOLD_MESSAGES = 1;
const SAVE_FOLD_EVENTS = SAVE_FOLD_MESSAGES + MESSAGE_COLUMNS.length;
const SAVE_FOLD_ROLLUPS = SAVE_FOLD_EVENTS + EVENT_COLUMNS.length;

/**
 * One batch in one statement: the events not stored yet are inserted, and every message with
 * a new event is either created from its given initial state (`created`: only its id comes
 * back) or, when it has a row, locked and returned as it stands (`existing`). Messages named
 * in `lock` (those with a token-authenticated event, whose binding must be checked even when the
 * event is a duplicate) are locked and returned too; `= ANY(lock)` filters the batch's own rows,
 * not the table. An event conflicts only on its dedupe key (seq is an identity): the conflict
 * target is left out, so the statement works with whichever unique index holds it — the
 * (message_id, dedupe_key) of migration 0006, or the global one it replaces while 0006–0007
 * run. The DO UPDATE is what locks and returns an existing row: ON CONFLICT finds it even when a concurrent
 * transaction committed it after this statement's snapshot, where a SELECT … FOR UPDATE would
 * miss it.
 *
 * It writes nothing outside the transaction its caller began (IN_OUR_TRANSACTION), so it
 * may travel with that transaction's BEGIN (db/kysely-pool.ts): were the BEGIN to fail before
 * it ran, this statement would otherwise commit events on their own, without their fold.
 *
 * It also records this transaction as the message's last `applied_tx` — unless a transaction
 * with a higher id got there first: that row stays locked but is not returned, and the caller
 * retries the batch under a new, higher id. A message's events are thus always folded in the
 * change feed's (transaction id, seq) order, so each event's `message_status` (written here
 * as the fold would leave it were the message new; SAVE_FOLD corrects the others) reads
 * right in feed order.
 *
 * A row `existing` inserted rather than updated counts as created: a retention step had it
 * locked when `created` ran and deleted it before `existing` could (PostgreSQL then retries
 * the insert, which succeeds), so the message is new again, made from its initial state.
 *
 * The rollup contribution of every created message is appended here, computed from what
 * `created` returns: a message made from its first event has no conflict, and is either not
 * final or final at once (latency 0: bucket 0, within 10 s) — exactly what
 * src/messages/rollup.ts's contributionOf gives such a state, without parameters of its own.
 * How existing messages moved is appended by SAVE_FOLD.
 */
const RECORD_BATCH = preparedStatement(
  'sw_status_record_batch',
  `WITH new_events AS (
     ${INSERT_EVENTS}
     SELECT ${EVENT_VALUES} FROM ${unnestRows('e', EVENT_COLUMNS, RECORD_BATCH_EVENTS)}
     WHERE ${IN_OUR_TRANSACTION}
     ON CONFLICT DO NOTHING
     RETURNING message_id, dedupe_key
   ), initial AS (
     SELECT ${MESSAGE_VALUES} FROM ${unnestRows('m', MESSAGE_COLUMNS, RECORD_BATCH_MESSAGES)}
     WHERE (m.id IN (SELECT message_id FROM new_events) OR m.id = ANY($${RECORD_BATCH_LOCK}::text[]))
       AND ${IN_OUR_TRANSACTION}
   ), created AS (
     INSERT INTO messages (${COLUMNS})
     SELECT * FROM initial ORDER BY id
     ON CONFLICT (id) DO NOTHING
     RETURNING id, created_at, api, status, error_code, first_terminal_at
   ), existing AS (
     INSERT INTO messages (${COLUMNS})
     SELECT * FROM initial WHERE id NOT IN (SELECT id FROM created) ORDER BY id
     ON CONFLICT (id) DO UPDATE SET applied_tx = pg_current_xact_id()
       WHERE messages.applied_tx < pg_current_xact_id()
     RETURNING ${COLUMNS}, xmax = 0 AS inserted
   ), all_created AS (
     SELECT id, created_at, api, status, error_code, first_terminal_at FROM created
     UNION ALL
     SELECT id, created_at, api, status, error_code, first_terminal_at FROM existing
     WHERE inserted
   ), created_rollup AS (
     ${INSERT_ROLLUP}
     SELECT date_trunc('minute', created_at, 'UTC'), api, status, coalesce(error_code, ''),
       CASE WHEN first_terminal_at IS NULL THEN -1 ELSE 0 END, count(*), 0,
       count(first_terminal_at)
     FROM all_created GROUP BY 1, 2, 3, 4, 5
   )
   SELECT encode(dedupe_key, 'hex') AS key, NULL AS created, NULL::json AS message
   FROM new_events
   UNION ALL SELECT NULL, id, NULL FROM all_created
   UNION ALL SELECT NULL, NULL, ${EXISTING_JSON} FROM existing WHERE NOT inserted`,
);

/**
 * What the fold decided, over rows the caller holds locked: the changed messages (an upsert:
 * see above; a new event restarts reconciliation's schedule for its message, src/reconcile), the events whose `message_status` RECORD_BATCH guessed wrong (found through
 * their unique (message id, dedupe key) by ON CONFLICT, never through a join whose prepared plan could go
 * stale: the events are this transaction's own, so the insert always conflicts), and the
 * rollup deltas of the moved messages.
 */
const SAVE_FOLD = preparedStatement(
  'sw_status_save_fold',
  `WITH saved AS (
     INSERT INTO messages (${COLUMNS})
     SELECT ${MESSAGE_VALUES} FROM ${unnestRows('m', MESSAGE_COLUMNS, SAVE_FOLD_MESSAGES)}
     ORDER BY m.id
     ON CONFLICT (id) DO UPDATE SET (${COLUMNS}) = (${EXCLUDED}), stuck = false, sweep_step = 0
   ), corrected AS (
     ${INSERT_EVENTS}
     SELECT ${EVENT_VALUES} FROM ${unnestRows('e', EVENT_COLUMNS, SAVE_FOLD_EVENTS)}
     ORDER BY dedupe_key
     ON CONFLICT (message_id, dedupe_key) DO UPDATE SET message_status = excluded.message_status
   )
   ${INSERT_ROLLUP}
   SELECT to_timestamp(r.minute / 1000), r.api, r.status, r.error_code, r.latency_bucket,
     r.messages, r.conflicts, r.final_within_10s
   FROM ${unnestRows('r', ROLLUP_COLUMNS, SAVE_FOLD_ROLLUPS)}`,
);

export interface RecordedBatch {
  /** Dedupe keys (hex) of the events that were new; the others were already stored. */
  newKeys: Set<string>;
  /** Messages with a new event that were created from their initial state. */
  created: Set<string>;
  /** Messages with a new event that had a row, as they stand, locked until the end. */
  existing: Map<string, MessageState>;
}

/** An event of the batch with its dedupe key (hex) and its status were its message new. */
export interface BatchEvent {
  event: StatusEvent;
  key: string;
  messageStatus: string;
}

/**
 * Inserts the events that are new and creates or locks their messages (RECORD_BATCH).
 * `initial` holds, per message of the batch, its state should it have no row yet; the
 * messages in `lock` are locked and returned (or created) even when none of their events is
 * new.
 */
export async function recordBatch(
  db: Db,
  events: readonly BatchEvent[],
  initial: readonly MessageState[],
  lock: readonly string[] = [],
): Promise<RecordedBatch> {
  const batch: RecordedBatch = { newKeys: new Set(), created: new Set(), existing: new Map() };
  if (events.length === 0) return batch;
  const { rows } = await db.executeQuery<{
    key: string | null;
    created: string | null;
    message: MessageJson | null;
  }>(
    RECORD_BATCH([
      ...columnParameters(inLockOrder(events).map(eventRow), EVENT_COLUMNS),
      ...columnParameters(initial.map(messageRow), MESSAGE_COLUMNS),
      lock,
    ]),
  );
  for (const { key, created, message } of rows) {
    if (key !== null) batch.newKeys.add(key);
    if (created !== null) batch.created.add(created);
    if (message !== null) batch.existing.set(message.id, fromJsonRow(message));
  }
  return batch;
}

/**
 * The events in the order every replica inserts them: by message id, each message's events in
 * arrival order (a stable sort). Inserting a new event waits for any other transaction that
 * has inserted the same (message id, dedupe key) and not yet committed — SignalWire's retries
 * of one callback reach several replicas — while holding the events inserted before it. Two
 * batches taking the same events in opposite orders would each wait for the other: a deadlock,
 * which PostgreSQL only breaks after `deadlock_timeout` (1 s) by failing one batch, retried
 * with every acknowledgement in it a second later. In one order across messages no such cycle
 * can form. Within a message arrival order is kept: it is the history's order (seq) and the
 * order the fold applied them in; only two distinct events of one message, both retried to two
 * replicas in opposite orders at once, could still meet that way.
 */
export function inLockOrder(events: readonly BatchEvent[]): readonly BatchEvent[] {
  return [...events].sort(({ event: a }, { event: b }) =>
    a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0,
  );
}

/**
 * Writes what the fold decided (SAVE_FOLD) over rows the caller holds locked: changed
 * messages, corrected `message_status` values, rollup deltas. `last`: the transaction's last
 * statement, which takes the COMMIT with it (db/kysely-pool.ts lastInTransaction).
 */
export async function saveFold(
  db: Db,
  fold: {
    states: readonly MessageState[];
    corrections: readonly BatchEvent[];
    deltas: readonly RollupDelta[];
  },
  { last }: { last: boolean },
): Promise<void> {
  const { states, corrections, deltas } = fold;
  if (states.length === 0 && corrections.length === 0 && deltas.length === 0) return;
  const query = SAVE_FOLD([
    ...columnParameters(states.map(messageRow), MESSAGE_COLUMNS),
    ...columnParameters(corrections.map(eventRow), EVENT_COLUMNS),
    ...columnParameters(deltas.map(deltaRow), ROLLUP_COLUMNS),
  ]);
  await db.executeQuery(last ? lastInTransaction(query) : query);
}

/**
 * Of `ids`, the messages whose stored history holds two different final (rank 50) statuses:
 * the conflict DESIGN §3 flags, found from the history for a message above rank 50 (`read`),
 * whose fold no longer sees which outcome it stands on (projection.ts). The batch's own events
 * are already in status_events (RECORD_BATCH, same transaction), and the message rows are
 * locked: a concurrent batch's events for them are either committed and seen here, or wait.
 */
export async function withTwoOutcomes(db: Db, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db
    .selectFrom('status_events')
    .select('message_id')
    .where('message_id', 'in', ids)
    .where('status', 'in', TERMINAL_STATUSES)
    .groupBy('message_id')
    .having((eb) => eb.fn.count('status').distinct(), '>', 1)
    .execute();
  return new Set(rows.map((row) => row.message_id));
}

/** An event as it travels: snake_case, timestamps in epoch milliseconds. */
function eventRow({ event, key, messageStatus }: BatchEvent) {
  return {
    message_id: event.messageId,
    api: event.api,
    status: event.status,
    raw_status: event.rawStatus,
    error_code: event.errorCode,
    error_message: event.errorMessage,
    source: event.source,
    provider_timestamp: event.providerTimestamp?.getTime() ?? null,
    received_at: event.receivedAt.getTime(),
    dedupe_key: key,
    raw: event.raw,
    message_status: messageStatus,
  };
}

/**
 * A value as JSON text. JSON.stringify writes a lone UTF-16 surrogate (half an emoji cut off
 * in a message body, say) as a `\udXXX` escape that PostgreSQL refuses; such text is stored
 * with U+FFFD in its place, as node-postgres encodes a lone surrogate in a text parameter.
 * Scanning from the left, an escaped backslash is consumed whole, so only real escapes match.
 */
function jsonText(value: unknown): string {
  const json = JSON.stringify(value);
  if (!json.includes('\\ud')) return json;
  return json.replace(/\\\\|\\ud[89a-f][0-9a-f]{2}/g, (escape) =>
    escape === '\\\\' ? escape : '\\ufffd',
  );
}

/** A state as a message row travels: snake_case, timestamps in epoch milliseconds. */
function messageRow(state: MessageState) {
  return {
    id: state.id,
    api: state.api,
    project_id: state.projectId,
    from: state.from,
    to: state.to,
    kind: state.kind,
    body: state.body,
    status: state.status,
    raw_status: state.rawStatus,
    status_rank: state.statusRank,
    status_provider_timestamp: state.statusProviderTimestamp?.getTime() ?? null,
    status_received_at: state.statusReceivedAt.getTime(),
    error_code: state.errorCode,
    error_message: state.errorMessage,
    conflict: state.conflict,
    num_segments: state.numSegments,
    num_media: state.numMedia,
    ref: state.ref,
    sent_via_proxy: state.sentViaProxy,
    client_status_callback: state.clientStatusCallback,
    created_at: state.createdAt.getTime(),
    updated_at: Date.now(),
    last_event_at: state.lastEventAt.getTime(),
    first_terminal_at: state.firstTerminalAt?.getTime() ?? null,
  } satisfies Record<(typeof MESSAGE_COLUMNS)[number][0], unknown>;
}

/** A `messages` row as EXISTING_JSON writes it: timestamps are epoch milliseconds. */
type MessageJson = { [K in keyof MessageRow]: JsonValue<MessageRow[K]> };
type JsonValue<T> = T extends Date ? number : T;

function fromJsonRow(row: MessageJson): MessageState {
  const date = (ms: number): Date => new Date(ms);
  return {
    id: row.id,
    api: row.api,
    projectId: row.project_id,
    from: row.from,
    to: row.to,
    kind: row.kind,
    body: row.body,
    status: row.status,
    rawStatus: row.raw_status,
    statusRank: row.status_rank,
    statusProviderTimestamp:
      row.status_provider_timestamp === null ? null : date(row.status_provider_timestamp),
    statusReceivedAt: date(row.status_received_at),
    errorCode: row.error_code,
    errorMessage: row.error_message,
    conflict: row.conflict,
    numSegments: row.num_segments,
    numMedia: row.num_media,
    ref: row.ref,
    sentViaProxy: row.sent_via_proxy,
    clientStatusCallback: row.client_status_callback,
    createdAt: date(row.created_at),
    lastEventAt: date(row.last_event_at),
    firstTerminalAt: row.first_terminal_at === null ? null : date(row.first_terminal_at),
  };
}
