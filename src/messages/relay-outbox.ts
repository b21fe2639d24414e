import { CompiledQuery } from 'kysely';
import type { Db } from '../db/database';
import { lastInTransaction } from '../db/kysely-pool';
import type { MessageState } from './projection';
import type { StatusEvent } from './status-event';

/**
 * The relay outbox's write side (DESIGN §10): a job per new event of a message that has a
 * `client_status_callback`, inserted in the event's own transaction by recordEvents, so an
 * event is stored if and only if its relay is. src/relay delivers the jobs.
 *
 * Costs nothing when no message of a batch has a client callback: the jobs are picked in
 * JavaScript from states the batch computes anyway, and the statement runs only when there
 * is at least one.
 */

/** One outbox row as JSON (snake_case, bytes as base64, the event's dedupe key as hex). */
export interface OutboxInsertRow {
  n: number;
  message_id: string;
  dedupe_key: string;
  url: string;
  host: string;
  method: 'POST' | 'GET';
  content_type: string | null;
  payload: string;
  signing_key_ref: string | null;
}

/**
 * The jobs of a batch's new events, in the order they were stored. Relayed: every event that
 * carries a relay payload (callbacks, replays, reconciliation) of a message that, after the
 * batch, has a client callback. Never the proxy's own record of a send, never a duplicate
 * (only new events are given).
 */
export function relayJobsFor(
  newEvents: ReadonlyArray<{ event: StatusEvent; key: string }>,
  states: ReadonlyMap<string, MessageState>,
): OutboxInsertRow[] {
  const rows: OutboxInsertRow[] = [];
  for (const { event, key } of newEvents) {
    if (!event.relay || event.source === 'proxy') continue;
    const url = states.get(event.messageId)?.clientStatusCallback;
    if (!url) continue;
    rows.push({
      n: rows.length,
      message_id: event.messageId,
      dedupe_key: key,
      url,
      host: hostOf(url),
      method: event.relay.method,
      content_type: event.relay.contentType,
      payload: event.relay.body,
      signing_key_ref: event.relay.keyRef,
    });
  }
  return rows;
}

/**
 * `scheme://host:port`, the unit of per-host limits; `invalid` when the URL does not parse.
 * The URL parser already folds case, the default port and IP spellings; a name's trailing dot
 * (the same host, written as absolute) is folded here, or an app could double its share of
 * RELAY_HOST_CONCURRENCY and its circuit by spelling its URLs both ways. The URL called is
 * left as written.
 */
export function hostOf(url: string): string {
  try {
    const parsed = new URL(url);
    const name = parsed.hostname.replace(/\.$/, '');
    return `${parsed.protocol}//${name}${parsed.port === '' ? '' : `:${parsed.port}`}`;
  } catch {
    return 'invalid';
  }
}

/**
 * Not a named statement: it runs only for batches with relays, and planned with the values
 * at hand it always finds the event's seq through the unique (message_id, dedupe_key) index (a generic
 * plan made while status_events was small could scan it). The jobs' ids are taken while the
 * batch holds its messages' rows locked, so per message they follow commit order; within the
 * batch, ORDER BY keeps the events' order.
 */
const ENQUEUE_RELAYS = `INSERT INTO relay_jobs (message_id, event_seq, url, host, method,
    content_type, payload, signing_key_ref)
  SELECT j.message_id,
    (SELECT seq FROM status_events e
      WHERE e.message_id = j.message_id AND e.dedupe_key = decode(j.dedupe_key, 'hex')),
    j.url, j.host, j.method, j.content_type, decode(j.payload, 'base64'), j.signing_key_ref
  FROM json_to_recordset($1::json) AS j(n integer, message_id text, dedupe_key text, url text,
    host text, method text, content_type text, payload text, signing_key_ref text)
  ORDER BY j.n`;

/** `last`: the transaction's last statement, which takes the COMMIT with it (lastInTransaction). */
export async function enqueueRelays(
  db: Db,
  rows: readonly OutboxInsertRow[],
  { last }: { last: boolean },
): Promise<void> {
  if (rows.length === 0) return;
  const query = CompiledQuery.raw(ENQUEUE_RELAYS, [JSON.stringify(rows)]);
  await db.executeQuery(last ? lastInTransaction(query) : query);
}
