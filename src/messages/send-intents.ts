import { CompiledQuery } from 'kysely';
import type { Db } from '../db/database';
import { createReadGate } from '../db/read-gate';
import type { ReadGate } from '../db/read-gate';
import { timedOut } from '../db/with-timeout';

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
 * How many intent writes (remember, forget) hold a connection of the primary's pool at once.
 * They are plain statements, outside any transaction, so no lock_timeout bounds them, and the
 * send stops waiting for one (proxy.service.ts, INTENT_WRITE_TIMEOUT_MS) without cancelling
 * it: while another session held send_intents (a non-concurrent index build, a LOCK TABLE left
 * open), every send left one more connection waiting for the lock, and a dozen sends took the
 * whole pool — the callbacks' commits failed, answered 503. Each write is one short statement
 * (well under a millisecond of the database's time): two at once is far more than a replica's
 * sends need, and a held table then holds two connections, not the pool, for as long as it is
 * held; the sends meanwhile go out without an intent after their wait, as when the store is down.
 */
const INTENT_WRITES_AT_ONCE = 2;

/**
 * How long a write waits for its turn: as long as the send waits for it (INTENT_WRITE_TIMEOUT_MS),
 * so a write its send gave up on does not start afterwards. Waiting costs no connection.
 */
const INTENT_TURN_WAIT_MS = 2_000;

const intentWrites = new WeakMap<Db, ReadGate>();

/** Runs `write` in one of the intent writes' turns on `db`'s pool (see INTENT_WRITES_AT_ONCE). */
async function inTurn(db: Db, write: () => Promise<unknown>): Promise<void> {
  let turns = intentWrites.get(db);
  if (!turns) {
    turns = createReadGate({ concurrency: INTENT_WRITES_AT_ONCE, maxWaitMs: INTENT_TURN_WAIT_MS });
    intentWrites.set(db, turns);
  }
  let started = false;
  try {
    await turns.run(() => {
      started = true;
      return write();
    });
  } catch (error) {
    if (started) throw error;
    // The gate's own refusal speaks of the query API's reads; this one of what was not done.
    throw timedOut(
      `no turn for a send intent write within ${INTENT_TURN_WAIT_MS} ms: the ones before it still wait for the database`,
    );
  }
}

/** Written before the send is forwarded; expires after `ttlDays` (the callback token's TTL). */
export async function rememberSendIntent(
  db: Db,
  intent: { ref: string; clientStatusCallback: string; ttlDays: number },
): Promise<void> {
  await inTurn(db, () =>
    db.executeQuery(
      CompiledQuery.raw(REMEMBER, [intent.ref, intent.clientStatusCallback, intent.ttlDays]),
    ),
  );
}

/** The send did not happen (SignalWire refused it, or was never reached). */
export async function forgetSendIntent(db: Db, ref: string): Promise<void> {
  await inTurn(db, () =>
    db.executeQuery(CompiledQuery.raw('DELETE FROM send_intents WHERE ref = $1', [ref])),
  );
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
