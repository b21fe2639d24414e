import { CompiledQuery } from 'kysely';
import type { Db } from '../db/database';
import { withinStatementTimeout } from '../db/read-timeout';
import type { BatchEvent } from './record-events.repository';

/**
 * How long one statement of a redaction (here, and the relay's: src/relay/relay-redaction.ts)
 * may run, its wait for a lock included, on top of the BEGIN's lock_timeout (db/kysely-pool.ts).
 * A redaction is asked on the primary's pool, the one the callbacks' commits use, by an app's
 * deletion or update passed through the proxy, which answers its caller without waiting longer
 * (pass-through.routes.ts, STORE_TIMEOUT_MS): a statement left waiting for a row another session
 * holds (an operator's `SELECT … FOR UPDATE` left open) kept its connection for as long as the
 * lock lasted. Each statement touches one message's rows: milliseconds.
 */
export const REDACTION_STATEMENT_TIMEOUT_MS = 2_000;

/**
 * Which messages a redaction may forget the text of: any (SignalWire answered that it did it),
 * or only one that the project recorded for it is `project` — what a caller's deletion answered
 * 404 (the message is gone, or was never that project's), or whose outcome is unknown, may
 * erase: another project's credentials can never wipe a message's text. `orUnrecorded`: a
 * message with no project recorded is in scope too.
 */
export type RedactionScope = { any: true } | { project: string; orUnrecorded: boolean };

/**
 * A message redacted at SignalWire (native `PATCH /api/messaging/messages/{id}` or the
 * compatibility update with an empty `Body`: "the original body is overwritten and cannot be
 * recovered") loses its text here too, where STORE_BODY=true kept it: the message's `body`
 * becomes `''`, as SignalWire shows a redacted message, and the text leaves its history's
 * payloads (`Body` in compatibility callbacks, `body` in native ones, the proxy's record of the
 * send and lookups). History stays append-only in every other respect. `updated_at` moves, so
 * a dashboard's cached copy (its ETag) is not served again.
 *
 * The empty body is what keeps it so: the fold never fills a body that is `''`
 * (projection.ts), and the write path strips the text from a redacted message's new events
 * (forgetEventTexts), so a callback SignalWire retries, one committed while the redaction ran,
 * or the send's own record, late, brings none back. Not reached: a message with no row yet
 * (all it has is in the outage spool, or its first write is late), for the redaction leaves no
 * trace but the row; and the relay's copies (src/relay/relay-redaction.ts).
 *
 * It runs whatever STORE_BODY says now: a service restarted with it off still holds the texts
 * it stored while it was on. With it off, a message that holds no text is marked `''` too, so
 * a run with it on again stores no text SignalWire sends late for it; the API, with it off,
 * shows no body for `''` (message-dto.ts).
 *
 * `scope` (RedactionScope) may limit it to a project's message; false when the message was
 * not in it (nothing was changed).
 */
export async function forgetMessageText(
  db: Db,
  messageId: string,
  scope: RedactionScope = { any: true },
): Promise<boolean> {
  return withinStatementTimeout(db, REDACTION_STATEMENT_TIMEOUT_MS, async (trx) => {
    if (!('any' in scope)) {
      const owned = await trx.executeQuery(
        CompiledQuery.raw(
          `SELECT 1 FROM messages
           WHERE id = $1 AND (project_id = $2 OR ($3::boolean AND project_id IS NULL))`,
          [messageId, scope.project, scope.orUnrecorded],
        ),
      );
      if (owned.rows.length === 0) return false;
    }
    await trx.executeQuery(
      CompiledQuery.raw(
        `UPDATE messages SET body = '', updated_at = now()
         WHERE id = $1 AND body IS DISTINCT FROM ''`,
        [messageId],
      ),
    );
    await forgetEventTexts(trx, [messageId]);
    return true;
  });
}

/** Removes the text from these messages' stored events. */
export async function forgetEventTexts(db: Db, messageIds: readonly string[]): Promise<void> {
  await db.executeQuery(
    CompiledQuery.raw(
      `UPDATE status_events SET raw = raw - 'Body' - 'body'
       WHERE message_id = ANY($1::text[]) AND (raw ? 'Body' OR raw ? 'body')`,
      [messageIds],
    ),
  );
}

/** Whether an event's stored payload holds a message text (an MMS without one has `''`). */
export function holdsText({ event }: BatchEvent): boolean {
  const { Body, body } = event.raw;
  return (typeof Body === 'string' && Body !== '') || (typeof body === 'string' && body !== '');
}
