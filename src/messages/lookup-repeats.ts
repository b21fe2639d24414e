import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { MessageState } from './projection';
import type { StatusEvent } from './status-event';

/**
 * A callback that SignalWire sent late, after a lookup (src/reconcile) had already recorded what
 * it says and relayed it to the app in its place. The two are different events by DESIGN §3's
 * dedupe key — a native callback has a provider timestamp and the lookup's answer none; a
 * compatibility lookup reads REST's `initiated` where the callback says `sending`; a native
 * message log may carry a failure's numeric code where the callback spells it out
 * (SIGNALWIRE.md) — so both are kept in the history. But the app has been told that status
 * once already, and must not be told it again (DESIGN §10: never a duplicate; README
 * "Reconciliation"): a repeat is a callback of the same canonical status that brings no error
 * the lookup's answer lacked. One that does (a log without the code) is news, and relayed.
 *
 * The converse, a lookup answered after the callback, is not news and is not stored at all
 * (RecordOptions.stillNews).
 */

/**
 * Whether `event` could repeat a lookup's: a callback saying the status the message stands on,
 * which stands on an event without a provider timestamp (a lookup's answer, a compatibility
 * callback, or the proxy's record of its send). Cheap: only these are looked up. The caller
 * leaves out messages this transaction created, which no lookup can have told of.
 */
export function mayRepeatLookup(previous: MessageState, event: StatusEvent): boolean {
  return (
    (event.source === 'callback' || event.source === 'replay') &&
    previous.statusProviderTimestamp === null &&
    previous.status === event.status &&
    // Without a provider timestamp, the same raw status and code as the event the status stands
    // on would have been that event's duplicate had it been a lookup's: the status stands on
    // the proxy's send or another callback (a compatibility `queued` after the send's).
    (event.providerTimestamp !== null ||
      previous.rawStatus.toLowerCase() !== event.rawStatus.toLowerCase() ||
      (previous.errorCode ?? '') !== (event.errorCode ?? ''))
  );
}

/**
 * The keys of `suspects` that repeat what the app was told last about their message: the
 * message's newest relayable event before this transaction's own is a lookup's, of the same
 * status, and the suspect brings no error it lacked. When another outcome was relayed after
 * the lookup (a late `undelivered`), the repeat is what brings the app back to the message's
 * status, and it is relayed. `suspects` holds no event a new one of the same batch came before
 * (the caller's fold).
 */
export async function repeatsOfLookups(
  trx: Db,
  suspects: ReadonlyArray<{ event: StatusEvent; key: string }>,
): Promise<Set<string>> {
  const repeats = new Set<string>();
  if (suspects.length === 0) return repeats;
  const ids = [...new Set(suspects.map(({ event }) => event.messageId))];
  // The events this transaction inserted carry its own id (tx): not yet told to anyone.
  const { rows } = await sql<{
    message_id: string;
    source: string;
    status: string;
    error_code: string | null;
    error_message: string | null;
  }>`
    SELECT DISTINCT ON (message_id) message_id, source, status, error_code, error_message
    FROM status_events
    WHERE message_id = ANY(${ids}::text[]) AND source <> 'proxy' AND tx <> pg_current_xact_id()
    ORDER BY message_id, seq DESC`.execute(trx);
  const lastTold = new Map(rows.map((row) => [row.message_id, row]));
  for (const { event, key } of suspects) {
    const last = lastTold.get(event.messageId);
    if (
      last?.source === 'reconcile' &&
      last.status === event.status &&
      !bringsErrorNews({ errorCode: last.error_code, errorMessage: last.error_message }, event)
    ) {
      repeats.add(key);
    }
  }
  return repeats;
}

/**
 * Whether `event` tells of an error the app was not told: a code where the lookup's answer had
 * none, or a message where it had neither (the fold's rules, projection.ts). A code spelled
 * otherwise (the log's `30003`, the callback's `unreachable_destination_handset`) is the same
 * failure told again.
 */
function bringsErrorNews(
  told: { errorCode: string | null; errorMessage: string | null },
  event: StatusEvent,
): boolean {
  if (told.errorCode !== null) return false;
  if (event.errorCode !== null) return true;
  return told.errorMessage === null && event.errorMessage !== null;
}
