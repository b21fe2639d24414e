import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { MessageState } from './projection';
import type { StatusEvent } from './status-event';

/**
 * A native callback that SignalWire sent late, after a lookup (src/reconcile) had already
 * recorded what it says and relayed it to the app in its place. The two are different events
 * by DESIGN §3's dedupe key (the callback has a provider timestamp, the lookup's answer none),
 * so both are kept in the history — but the app has been told that status once already, and
 * must not be told it again (DESIGN §10: never a duplicate).
 *
 * The converse, a lookup answered after the callback, is not news and is not stored at all
 * (RecordOptions.stillNews).
 */

/**
 * Whether `event` could repeat a lookup's: the message's status stands on an event without a
 * provider timestamp (a lookup's answer, or the proxy's record of its send) and `event`, a
 * callback with one, says that same status and error. Cheap: only these are looked up.
 */
export function mayRepeatLookup(previous: MessageState, event: StatusEvent): boolean {
  return (
    (event.source === 'callback' || event.source === 'replay') &&
    event.providerTimestamp !== null &&
    previous.statusProviderTimestamp === null &&
    previous.status === event.status &&
    normalizedRaw(previous.rawStatus) === normalizedRaw(event.rawStatus) &&
    (previous.errorCode ?? '') === (event.errorCode ?? '')
  );
}

/**
 * The keys of `suspects` that repeat what the app was told last about their message: the
 * message's newest relayable event before this transaction's own is a lookup's, saying the same.
 * When another outcome was relayed after the lookup (a late `undelivered`), the repeat is what
 * brings the app back to the message's status, and it is relayed. `suspects` holds no event a
 * new one of the same batch came before (the caller's fold).
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
    raw_status: string;
    error_code: string | null;
  }>`
    SELECT DISTINCT ON (message_id) message_id, source, raw_status, error_code
    FROM status_events
    WHERE message_id = ANY(${ids}::text[]) AND source <> 'proxy' AND tx <> pg_current_xact_id()
    ORDER BY message_id, seq DESC`.execute(trx);
  const lastTold = new Map(rows.map((row) => [row.message_id, row]));
  for (const { event, key } of suspects) {
    const last = lastTold.get(event.messageId);
    if (
      last?.source === 'reconcile' &&
      normalizedRaw(last.raw_status) === normalizedRaw(event.rawStatus) &&
      (last.error_code ?? '') === (event.errorCode ?? '')
    ) {
      repeats.add(key);
    }
  }
  return repeats;
}

/** As the dedupe key reads a raw status (status-event.ts). */
function normalizedRaw(rawStatus: string): string {
  return rawStatus.toLowerCase();
}
