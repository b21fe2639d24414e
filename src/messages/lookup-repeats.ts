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

/** An event as the app may have been told it. */
interface Told {
  source: string;
  status: string;
  errorCode: string | null;
  errorMessage: string | null;
}

/**
 * The keys of the events of `suspects`' messages in `batch` that repeat what the app was told
 * last at their status's rank (mayRepeatLookup says which messages may hold one): that
 * is a lookup's event of the same status, and the suspect brings no error it lacked. What the
 * app was told last at a rank is found by going through the message's history in order, then
 * this batch's new events (`batch`, per message in arrival order): every event is told except a
 * repeat held back by this same rule — so a second late callback of the status is held back
 * too, and a batch's events count as one per transaction would.
 */
export async function repeatsOfLookups(
  trx: Db,
  suspects: ReadonlyArray<{ event: StatusEvent; key: string }>,
  batch: ReadonlyMap<string, ReadonlyArray<{ event: StatusEvent; key: string }>>,
): Promise<Set<string>> {
  const repeats = new Set<string>();
  if (suspects.length === 0) return repeats;
  const ids = [...new Set(suspects.map(({ event }) => event.messageId))];
  // The events this transaction inserted carry its own id (tx): they are the batch's, below. A
  // message's history is short (duplicates are not stored): all of it, in order.
  const { rows } = await sql<{
    message_id: string;
    source: string;
    status: string;
    error_code: string | null;
    error_message: string | null;
  }>`
    SELECT message_id, source, status, error_code, error_message
    FROM status_events
    WHERE message_id = ANY(${ids}::text[]) AND source <> 'proxy' AND tx <> pg_current_xact_id()
    ORDER BY message_id, seq`.execute(trx);
  const lastTold = new Map(ids.map((id) => [id, new Map<number, Told>()]));
  for (const row of rows) {
    tell(lastTold.get(row.message_id)!, {
      source: row.source,
      status: row.status,
      errorCode: row.error_code,
      errorMessage: row.error_message,
    });
  }
  for (const id of ids) {
    for (const { event, key } of batch.get(id) ?? []) {
      if (event.source === 'proxy') continue;
      if (tell(lastTold.get(id)!, event)) repeats.add(key);
    }
  }
  return repeats;
}

/**
 * Records `event` as told at its rank unless it repeats the lookup told last there; says
 * whether it does.
 */
function tell(lastTold: Map<number, Told>, event: Told): boolean {
  const rank = rankOf(event.status as CanonicalStatus);
  const last = lastTold.get(rank);
  const repeat =
    (event.source === 'callback' || event.source === 'replay') &&
    last?.source === 'reconcile' &&
    last.status === event.status &&
    !bringsErrorNews(last, event);
  if (!repeat) lastTold.set(rank, event);
  return repeat;
}

/**
 * Whether `event` tells of an error the app was not told: a code where the lookup's answer had
 * none or another of the same kind, or a message where it had neither (the fold's rules,
 * projection.ts). A code of the other kind (the native log's `30003`, the callback's
 * `unreachable_destination_handset`: SIGNALWIRE.md) is the same failure told again; two numbers
 * (compatibility lookups and callbacks both carry SignalWire's numeric codes), or two names,
 * that differ are two failures.
 */
function bringsErrorNews(told: Told, event: Told): boolean {
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
