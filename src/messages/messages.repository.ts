import type { Selectable } from 'kysely';
import { jsonArrayFrom } from 'kysely/helpers/postgres';
import type { Database, Db, StatusEventsTable } from '../db/database';

/**
 * The read side of `messages` and `status_events`; the write side is
 * record-events.repository.ts. Functions take `db` first and work the same on a transaction.
 */

export type MessageRow = Selectable<Database['messages']>;
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
            'provider_timestamp',
            'received_at',
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
    // Timestamps inside JSON arrive as ISO 8601 text.
    history: history.map((event) => ({
      ...event,
      provider_timestamp:
        event.provider_timestamp === null ? null : new Date(event.provider_timestamp),
      received_at: new Date(event.received_at),
    })),
  };
}

export interface MessageFilter {
  status?: string;
  to?: string;
  from?: string;
  api?: 'cxml' | 'native';
  errorCode?: string;
  since?: Date;
  until?: Date;
  /** Reconciliation's stuck messages only (DESIGN §11); index messages_stuck_idx. */
  stuck?: boolean;
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
  // The stuck filter (src/reconcile): separate from the others on purpose.
  if (filter.stuck !== undefined) query = query.where('stuck', '=', filter.stuck);
  if (after) {
    query = query.where((eb) =>
      eb(eb.refTuple('last_event_at', 'id'), '<', eb.tuple(after.lastEventAt, after.id)),
    );
  }
  return query.orderBy('last_event_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
}
