import { CompiledQuery } from 'kysely';
import type { Db } from '../db/database';
import { lastInTransaction } from '../db/kysely-pool';
import { poolTurns } from '../db/pool-turns';
import { withinStatementTimeout } from '../db/read-timeout';

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

/**
 * How long one intent statement (remember, forget) may run, its wait for a lock included: as
 * long as its send waits for it (proxy.service.ts, INTENT_WRITE_TIMEOUT_MS). They used to be plain
 * statements outside any transaction: no lock_timeout, no statement timeout bounded them, and the
 * send stopped waiting without cancelling them, so while another session held send_intents (a
 * non-concurrent index build, a LOCK TABLE left open) each one kept its connection for as long as
 * the lock lasted. Each is one short statement (well under a millisecond of the database's time).
 */
export const INTENT_STATEMENT_TIMEOUT_MS = 2_000;

/**
 * Turns for the intent writes on a pool (db/pool-turns.ts): a held send_intents holds two
 * connections, not the pool, for INTENT_STATEMENT_TIMEOUT_MS; the sends meanwhile go out without
 * an intent after their wait, as when the store is down. Two at once is far more than a
 * replica's sends need. A write waits for its turn as long as its send waits for it
 * (INTENT_WRITE_TIMEOUT_MS), so a write its send gave up on does not start afterwards.
 */
const inTurn = poolTurns({ atOnce: 2, maxWaitMs: 2_000, what: 'a send intent write' });

/**
 * Runs one intent statement in its turn, in a transaction of its own: the BEGIN's lock_timeout
 * (db/kysely-pool.ts) and INTENT_STATEMENT_TIMEOUT_MS bound it, and the COMMIT goes with it.
 */
async function writeIntent(db: Db, statement: CompiledQuery): Promise<void> {
  await inTurn(db, () =>
    withinStatementTimeout(db, INTENT_STATEMENT_TIMEOUT_MS, (trx) =>
      trx.executeQuery(lastInTransaction(statement)),
    ),
  );
}

/** Written before the send is forwarded; expires after `ttlDays` (the callback token's TTL). */
export async function rememberSendIntent(
  db: Db,
  intent: { ref: string; clientStatusCallback: string; ttlDays: number },
): Promise<void> {
  await writeIntent(
    db,
    CompiledQuery.raw(REMEMBER, [intent.ref, intent.clientStatusCallback, intent.ttlDays]),
  );
}

/**
 * The send did not happen (SignalWire refused it, or was never reached). Best effort: an intent
 * this fails to delete stays until it expires, and is read by nothing meanwhile — intents are
 * read by the ref of a callback token (record-events.ts) or of an answer SignalWire gives for its
 * message (clientCallbacksFor), and the ref is minted at random for this one send, whose token
 * never left the service (or left it in a send SignalWire refused): no callback or answer will
 * ever carry it, and no relay job is ever written from it. It costs a row until a later send's
 * REMEMBER deletes it, expired.
 */
export async function forgetSendIntent(db: Db, ref: string): Promise<void> {
  await writeIntent(db, CompiledQuery.raw('DELETE FROM send_intents WHERE ref = $1', [ref]));
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
