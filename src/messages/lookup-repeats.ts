import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { MessageState } from './projection';
import type { StatusEvent } from './status-event';
import { rankOf } from './statuses';
import type { CanonicalStatus } from './statuses';

/**
 * A callback that SignalWire sent late, after a lookup (src/reconcile) had already recorded what
 * it says and relayed it to the app in its place. The two are different events by DESIGN §3's
 * dedupe key — a native callback has a provider timestamp and the lookup's answer none; a
 * compatibility lookup reads REST's `initiated` where the callback says `sending`; a native
 * message log may carry a failure's numeric code where the callback names it (SIGNALWIRE.md) —
 * so both are kept in the history. But the app has been told that status once already, and
 * must not be told it again (DESIGN §10: never a duplicate; README "Reconciliation").
 *
 * A repeat is a callback whose status is the one the app was last told at that rank, by a
 * lookup, and that brings no error the lookup's answer lacked. At that rank, not overall: after
 * a lookup's `delivered`, SignalWire's delayed `sent` and then its `delivered` — their usual
 * order — leave the app told `delivered` once (the `sent` is relayed: it is another status);
 * after a lookup's `delivered` and a `read`, a late `delivered` is still the lookup's. When
 * another outcome of that rank was relayed after the lookup (a late `undelivered`), the repeat
 * is what brings the app back to the message's status, and it is relayed.
 *
 * The converse, a lookup answered after the callback, is not news and is not stored at all
 * (RecordOptions.stillNews).
 */

/**
 * Whether `event` could repeat a lookup's: a callback that does not raise the message's rank
 * (a lookup only records a status above the message's, so what it told is at or below where
 * the message stands). Cheap: callbacks in their order raise it, and only the others are
 * looked up. The caller leaves out messages this transaction created, which no lookup can have
 * told of.
 */
export function mayRepeatLookup(previous: MessageState, event: StatusEvent): boolean {
  return (
    (event.source === 'callback' || event.source === 'replay') &&
    rankOf(event.status) <= previous.statusRank &&
    // Without a provider timestamp, the same raw status and code as the event the status stands
    // on would have been that event's duplicate had it been a lookup's: the status stands on
    // the proxy's send or another callback (a compatibility `queued` after the send's).
    !(
      event.providerTimestamp === null &&
      previous.status === event.status &&
      previous.rawStatus.toLowerCase() === event.rawStatus.toLowerCase() &&
      (previous.errorCode ?? '') === (event.errorCode ?? '')
    )
  );
}

interface ToldEvent {
  message_id: string;
  source: string;
  status: string;
  error_code: string | null;
  error_message: string | null;
}

/**
 * The keys of `suspects` that repeat what the app was told last at their status's rank: the
 * newest relayable event of that rank before this transaction's own is a lookup's, of the same
 * status, and the suspect brings no error it lacked. `suspects` holds no event that a new one
 * of the same batch and rank came before (the caller's fold).
 */
export async function repeatsOfLookups(
  trx: Db,
  suspects: ReadonlyArray<{ event: StatusEvent; key: string }>,
): Promise<Set<string>> {
  const repeats = new Set<string>();
  if (suspects.length === 0) return repeats;
  const ids = [...new Set(suspects.map(({ event }) => event.messageId))];
  // The events this transaction inserted carry its own id (tx): not yet told to anyone. A
  // message's history is short (duplicates are not stored): all of it, newest first.
  const { rows } = await sql<ToldEvent>`
    SELECT message_id, source, status, error_code, error_message
    FROM status_events
    WHERE message_id = ANY(${ids}::text[]) AND source <> 'proxy' AND tx <> pg_current_xact_id()
    ORDER BY message_id, seq DESC`.execute(trx);
  const told = new Map<string, ToldEvent[]>();
  for (const row of rows) told.set(row.message_id, [...(told.get(row.message_id) ?? []), row]);
  for (const { event, key } of suspects) {
    const rank = rankOf(event.status);
    const last = told
      .get(event.messageId)
      ?.find((row) => rankOf(row.status as CanonicalStatus) === rank);
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
 * none or another of the same kind, or a message where it had neither (the fold's rules,
 * projection.ts). A code of the other kind (the native log's `30003`, the callback's
 * `unreachable_destination_handset`: SIGNALWIRE.md) is the same failure told again; two numbers
 * (compatibility lookups and callbacks both carry SignalWire's numeric codes), or two names,
 * that differ are two failures.
 */
function bringsErrorNews(
  told: { errorCode: string | null; errorMessage: string | null },
  event: StatusEvent,
): boolean {
  if (event.errorCode !== null) {
    if (told.errorCode === null) return true;
    return (
      event.errorCode !== told.errorCode && numeric(event.errorCode) === numeric(told.errorCode)
    );
  }
  return told.errorCode === null && told.errorMessage === null && event.errorMessage !== null;
}

function numeric(code: string): boolean {
  return /^\d+$/.test(code);
}
