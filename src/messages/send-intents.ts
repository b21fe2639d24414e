import { CompiledQuery } from 'kysely';
import type { Db } from '../db/database';

/**
 * Send intents (db/migrations/0005_send_intents.sql): the caller's own status callback of a
 * send, keyed by its callback token's ref, written by the proxy before it forwards the send.
 *
 * A callback that beats the proxy's record of the send (SignalWire calls back before its answer
 * to the create call has been recorded) creates the message from the callback alone, without
 * the client callback; the write path then finds the URL here, in the callback's own
 * transaction, so its relay job is written with it (record-events.ts). The proxy's own record
 * deletes the intent in its transaction: from then on the message row holds the URL.
 */

// A few expired intents go with each new one: the table cannot grow beyond the sends in
// flight and the leftovers of the last token lifetime, without a job of its own.
const EXPIRED_PER_WRITE = 10;

const REMEMBER = `WITH expired AS (
    DELETE FROM send_intents WHERE ref IN (
      SELECT ref FROM send_intents
      WHERE created_at < now() - make_interval(days => $3::integer)
      ORDER BY created_at LIMIT ${EXPIRED_PER_WRITE} FOR UPDATE SKIP LOCKED)
  )
  INSERT INTO send_intents (ref, client_status_callback) VALUES ($1, $2)
  ON CONFLICT (ref) DO NOTHING`;

/** Written before the send is forwarded; expires after `ttlDays` (the callback token's TTL). */
export async function rememberSendIntent(
  db: Db,
  intent: { ref: string; clientStatusCallback: string; ttlDays: number },
): Promise<void> {
  await db.executeQuery(
    CompiledQuery.raw(REMEMBER, [intent.ref, intent.clientStatusCallback, intent.ttlDays]),
  );
}

/** The send did not happen (SignalWire refused it, or was never reached). */
export async function forgetSendIntent(db: Db, ref: string): Promise<void> {
  await db.executeQuery(CompiledQuery.raw('DELETE FROM send_intents WHERE ref = $1', [ref]));
}

/** The client callbacks of these refs' sends, by ref (only those that have an intent). */
export async function sendIntentsFor(
  db: Db,
  refs: readonly string[],
): Promise<Map<string, string>> {
  if (refs.length === 0) return new Map();
  const { rows } = await db.executeQuery<{ ref: string; client_status_callback: string }>(
    CompiledQuery.raw(
      'SELECT ref, client_status_callback FROM send_intents WHERE ref = ANY($1::text[])',
      [refs],
    ),
  );
  return new Map(rows.map((row) => [row.ref, row.client_status_callback]));
}

/**
 * The caller's own callback URLs of these sends, by ref: the message's, when its send is one
 * of them, else the send intents (a send whose record never landed).
 */
export async function clientCallbacksFor(
  db: Db,
  messageId: string | null,
  refs: readonly string[],
): Promise<Map<string, string>> {
  const found = await sendIntentsFor(db, refs);
  if (messageId === null) return found;
  const { rows } = await db.executeQuery<{ ref: string | null; client_status_callback: string }>(
    CompiledQuery.raw('SELECT ref, client_status_callback FROM messages WHERE id = $1', [
      messageId,
    ]),
  );
  for (const row of rows) {
    if (row.ref !== null && refs.includes(row.ref) && row.client_status_callback !== null) {
      found.set(row.ref, row.client_status_callback);
    }
  }
  return found;
}

/** The proxy's record of these sends is being committed: their message rows hold the URL. */
export async function dropSendIntents(db: Db, refs: readonly string[]): Promise<void> {
  if (refs.length === 0) return;
  await db.executeQuery(
    CompiledQuery.raw('DELETE FROM send_intents WHERE ref = ANY($1::text[])', [refs]),
  );
}
