import { CompiledQuery } from 'kysely';
import type { Db } from '../db/database';

/**
 * A message redacted at SignalWire (native `PATCH /api/messaging/messages/{id}` or the
 * compatibility update with an empty `Body`: "the original body is overwritten and cannot be
 * recovered") loses its text here too, where STORE_BODY=true kept it: the message's `body`
 * and the text in its history's payloads (`Body` in compatibility callbacks, `body` in native
 * ones, the proxy's record of the send and lookups). History stays append-only in every other
 * respect. `updated_at` moves, so a dashboard's cached copy (its ETag) is not served again.
 *
 * Not reached: a callback still waiting in the outage spool, and a relay not yet delivered to
 * the app (it carries the callback's bytes as SignalWire sent them, to the app that sent the
 * text; a delivered or dead relay keeps no text).
 */
export async function forgetMessageText(db: Db, messageId: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.executeQuery(
      CompiledQuery.raw(
        'UPDATE messages SET body = NULL, updated_at = now() WHERE id = $1 AND body IS NOT NULL',
        [messageId],
      ),
    );
    await trx.executeQuery(
      CompiledQuery.raw(
        `UPDATE status_events SET raw = raw - 'Body' - 'body'
         WHERE message_id = $1 AND (raw ? 'Body' OR raw ? 'body')`,
        [messageId],
      ),
    );
  });
}
