import type { Db } from '../db/database';
import { withinStatementTimeout } from '../db/read-timeout';
import { REDACTION_STATEMENT_TIMEOUT_MS } from '../messages/redaction';
import { withoutMessageBody } from './relay-request';

/**
 * The relay's copies of a redacted message's callbacks (src/messages/redaction.ts), with
 * STORE_BODY=true, where a relay keeps its callback once it leaves `pending`: a delivered one
 * keeps nothing more (nothing is left to send), a dead one keeps its callback without the
 * text, for a retry — as they are kept without STORE_BODY. A relay still pending goes to the
 * app as SignalWire sent it: the app that sent the text; when it leaves pending it is kept as
 * here, not whole (recordOutcomes' `ifRedacted`, src/relay/relay.repository.ts).
 */
export async function forgetRelayedText(db: Db, messageId: string): Promise<void> {
  // One transaction whose statements are cancelled after REDACTION_STATEMENT_TIMEOUT_MS: a
  // relay row another session holds costs the redaction that long at most, and then fails.
  await withinStatementTimeout(db, REDACTION_STATEMENT_TIMEOUT_MS, async (trx) => {
    await trx
      .updateTable('relay_jobs')
      .set({ payload: null })
      .where('message_id', '=', messageId)
      .where('state', '=', 'delivered')
      .where('payload', 'is not', null)
      .execute();
    // A dead one's text is cut out of its callback as the relay cuts it (relay-request.ts).
    const dead = await trx
      .selectFrom('relay_jobs')
      .select(['id', 'payload', 'method', 'content_type'])
      .where('message_id', '=', messageId)
      .where('state', '=', 'dead')
      .where('payload', 'is not', null)
      .execute();
    for (const job of dead) {
      await trx
        .updateTable('relay_jobs')
        .set({ payload: withoutMessageBody(job.payload!, job.method, job.content_type) })
        .where('id', '=', job.id)
        .where('state', '=', 'dead')
        .execute();
    }
  });
}
