import type { Insertable, Selectable } from 'kysely';
import type { Db, MessagesTable, StatusEventsTable } from '../db/database';
import type { MessageState } from './projection';
import type { StatusEvent } from './status-event';

/**
 * All SQL for `messages` and `status_events`. Functions take `db` first and work the same on
 * a transaction; transactions are started by the caller (messages/record-events.ts).
 */

export type MessageRow = Selectable<MessagesTable>;
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

/** Inserts events, skipping duplicates; returns the dedupe keys (hex) that were new. */
export async function insertEvents(
  db: Db,
  events: ReadonlyArray<{ event: StatusEvent; key: Buffer }>,
): Promise<Set<string>> {
  if (events.length === 0) return new Set();
  const rows: Array<Insertable<StatusEventsTable>> = events.map(({ event, key }) => ({
    message_id: event.messageId,
    api: event.api,
    status: event.status,
    raw_status: event.rawStatus,
    error_code: event.errorCode,
    error_message: event.errorMessage,
    source: event.source,
    provider_timestamp: event.providerTimestamp,
    received_at: event.receivedAt,
    dedupe_key: key,
    raw: JSON.stringify(event.raw),
  }));
  const inserted = await db
    .insertInto('status_events')
    .values(rows)
    .onConflict((oc) => oc.column('dedupe_key').doNothing())
    .returning('dedupe_key')
    .execute();
  return new Set(inserted.map((row) => row.dedupe_key.toString('hex')));
}

/** Inserts messages that do not exist yet; returns the ids it created. */
export async function insertNewMessages(
  db: Db,
  states: readonly MessageState[],
): Promise<Set<string>> {
  if (states.length === 0) return new Set();
  const created = await db
    .insertInto('messages')
    .values(states.map(toRow))
    .onConflict((oc) => oc.column('id').doNothing())
    .returning('id')
    .execute();
  return new Set(created.map((row) => row.id));
}

/** Reads and row-locks messages, in id order so concurrent writers lock in the same order. */
export async function lockMessages(db: Db, ids: readonly string[]): Promise<MessageState[]> {
  if (ids.length === 0) return [];
  const rows = await db
    .selectFrom('messages')
    .selectAll()
    .where('id', 'in', ids)
    .orderBy('id')
    .forUpdate()
    .execute();
  return rows.map(fromRow);
}

/** Writes projected states over rows the caller holds locked. */
export async function saveMessages(db: Db, states: readonly MessageState[]): Promise<void> {
  if (states.length === 0) return;
  await db
    .insertInto('messages')
    .values(states.map(toRow))
    .onConflict((oc) =>
      oc.column('id').doUpdateSet((eb) => ({
        project_id: eb.ref('excluded.project_id'),
        from: eb.ref('excluded.from'),
        to: eb.ref('excluded.to'),
        kind: eb.ref('excluded.kind'),
        body: eb.ref('excluded.body'),
        status: eb.ref('excluded.status'),
        raw_status: eb.ref('excluded.raw_status'),
        status_rank: eb.ref('excluded.status_rank'),
        status_provider_timestamp: eb.ref('excluded.status_provider_timestamp'),
        status_received_at: eb.ref('excluded.status_received_at'),
        error_code: eb.ref('excluded.error_code'),
        error_message: eb.ref('excluded.error_message'),
        conflict: eb.ref('excluded.conflict'),
        num_segments: eb.ref('excluded.num_segments'),
        num_media: eb.ref('excluded.num_media'),
        ref: eb.ref('excluded.ref'),
        sent_via_proxy: eb.ref('excluded.sent_via_proxy'),
        client_status_callback: eb.ref('excluded.client_status_callback'),
        created_at: eb.ref('excluded.created_at'),
        updated_at: eb.ref('excluded.updated_at'),
        last_event_at: eb.ref('excluded.last_event_at'),
      })),
    )
    .execute();
}

/** The callback-token ref a message is bound to: undefined when the message is unknown. */
export async function findMessageRef(db: Db, id: string): Promise<string | null | undefined> {
  const row = await db.selectFrom('messages').select('ref').where('id', '=', id).executeTakeFirst();
  return row?.ref;
}

export async function findMessage(db: Db, id: string): Promise<MessageRow | undefined> {
  return db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirst();
}

/** History in arrival order (seq is an identity: the commit order of the events). */
export async function findHistory(db: Db, messageId: string): Promise<HistoryRow[]> {
  return db
    .selectFrom('status_events')
    .select([
      'seq',
      'status',
      'raw_status',
      'error_code',
      'error_message',
      'source',
      'provider_timestamp',
      'received_at',
    ])
    .where('message_id', '=', messageId)
    .orderBy('seq')
    .execute();
}

export interface MessageFilter {
  status?: string;
  to?: string;
  from?: string;
  api?: 'cxml' | 'native';
  errorCode?: string;
  since?: Date;
  until?: Date;
}

export interface ListCursor {
  lastEventAt: Date;
  id: string;
}

/**
 * Newest activity first, keyset-paginated on (last_event_at, id): every filter has an index
 * ending in that key, so a page is an index range scan however deep the client pages.
 */
export async function listMessages(
  db: Db,
  filter: MessageFilter,
  limit: number,
  after?: ListCursor,
): Promise<MessageRow[]> {
  let query = db.selectFrom('messages').selectAll();
  if (filter.status) query = query.where('status', '=', filter.status);
  if (filter.to) query = query.where('to', '=', filter.to);
  if (filter.from) query = query.where('from', '=', filter.from);
  if (filter.api) query = query.where('api', '=', filter.api);
  if (filter.errorCode) query = query.where('error_code', '=', filter.errorCode);
  if (filter.since) query = query.where('last_event_at', '>=', filter.since);
  if (filter.until) query = query.where('last_event_at', '<', filter.until);
  if (after) {
    query = query.where((eb) =>
      eb(eb.refTuple('last_event_at', 'id'), '<', eb.tuple(after.lastEventAt, after.id)),
    );
  }
  return query.orderBy('last_event_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
}

function toRow(state: MessageState): Insertable<MessagesTable> {
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
    status_provider_timestamp: state.statusProviderTimestamp,
    status_received_at: state.statusReceivedAt,
    error_code: state.errorCode,
    error_message: state.errorMessage,
    conflict: state.conflict,
    num_segments: state.numSegments,
    num_media: state.numMedia,
    ref: state.ref,
    sent_via_proxy: state.sentViaProxy,
    client_status_callback: state.clientStatusCallback,
    created_at: state.createdAt,
    updated_at: new Date(),
    last_event_at: state.lastEventAt,
  };
}

function fromRow(row: MessageRow): MessageState {
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
    statusProviderTimestamp: row.status_provider_timestamp,
    statusReceivedAt: row.status_received_at,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    conflict: row.conflict,
    numSegments: row.num_segments,
    numMedia: row.num_media,
    ref: row.ref,
    sentViaProxy: row.sent_via_proxy,
    clientStatusCallback: row.client_status_callback,
    createdAt: row.created_at,
    lastEventAt: row.last_event_at,
  };
}
