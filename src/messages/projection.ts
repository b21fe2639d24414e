import type { StatusEvent } from './status-event';
import { TERMINAL_RANK, rankOf } from './statuses';
import type { Api } from './statuses';

/** The derived current state of one message (a `messages` row, camelCase). */
export interface MessageState {
  id: string;
  api: Api;
  projectId: string | null;
  from: string | null;
  to: string | null;
  kind: 'sms' | 'mms' | null;
  body: string | null;
  status: string;
  rawStatus: string;
  statusRank: number;
  statusProviderTimestamp: Date | null;
  statusReceivedAt: Date;
  errorCode: string | null;
  errorMessage: string | null;
  conflict: boolean;
  numSegments: number | null;
  numMedia: number | null;
  ref: string | null;
  sentViaProxy: boolean;
  clientStatusCallback: string | null;
  /** When the message was first seen: its first recorded event's receive time, never moved. */
  createdAt: Date;
  lastEventAt: Date;
  /** When the message first reached a final status (rank ≥ 50); null until then. */
  firstTerminalAt: Date | null;
}

/**
 * Folds one event into a message's state (DESIGN §3). Pure; the status and its error code come
 * out the same whatever order the events arrive in (SignalWire does not order its callbacks,
 * and a spool replay stores events late):
 * - the highest rank wins; between different statuses of equal rank the later provider
 *   timestamp (the receive time for an event without one, then receive time) wins, and between
 *   terminal ones the message is flagged as a conflict;
 * - the status keeps the time of its LATEST event: an event of the current status that is later
 *   moves it forward. Kept at the first one instead, an outcome between the two (delivered@01,
 *   undelivered@05, delivered@09) would beat the status or not depending on which delivered
 *   arrived first;
 * - an error code, once known, is never erased by an event without one (DESIGN §3), and is
 *   replaced only by an event that wins or is the latest of the current status and has one; a
 *   message without one takes the code of any event that brings one, whatever its rank or
 *   outcome (`undelivered`, then `undelivered` + `30003` → `30003`). So a terminal conflict
 *   keeps the code that came with it whichever outcome wins and whichever came first
 *   (`undelivered` + `30003` against a later `delivered`: `delivered`, `conflict`, `30003`);
 * - an error message that comes without a code is kept by the same rules among errors without
 *   a code, and gives way to any code (which brings its own message, or none);
 * - a body, once known, is kept; `''` is a message redacted at SignalWire (redaction.ts), which
 *   no later callback's text fills again.
 * What holds for any order is checked in test/unit/projection.property.test.ts. Limits of a
 * fold that keeps only the current state: an event below the current rank cannot tell
 * whether it would have been a conflict or given a code (read, then delivered and
 * undelivered) — the conflict is then found from the history by the write
 * (record-events.ts hiddenConflicts), the code is not; a status that comes with two
 * different errors (codes, or messages alone) and once without one can keep either error, depending on arrival order; and `createdAt`/`firstTerminalAt`
 * are arrival facts by definition.
 */
export function applyEvent(current: MessageState | null, event: StatusEvent): MessageState {
  const rank = rankOf(event.status);
  if (!current) return initialState(event, rank);

  // Another status of the same rank: the later one takes over (both are what SignalWire said).
  const rival = rank === current.statusRank && event.status !== current.status;
  const conflict = rival && rank >= TERMINAL_RANK;
  const later = isLater(event, current);
  const wins = rank > current.statusRank || (rival && later);
  // The event that now stands for the status: a winner, or a later event of the same status.
  const same = event.status === current.status;
  const moves = wins || (same && later);
  // DESIGN §3: a code, once known, is not erased by an event without one; an event with a code
  // replaces it when the event now stands for the status, and gives it to a message without
  // one whatever its rank or outcome.
  const takesError =
    event.errorCode !== null
      ? moves || current.errorCode === null
      : // An error message without a code (SignalWire: "some messages may have an
        // error_message without an error_code") is taken on the same terms by a message
        // whose error has no code either, and never displaces a coded one.
        event.errorMessage !== null &&
        current.errorCode === null &&
        (moves || current.errorMessage === null);
  const send = event.send;

  return {
    ...current,
    // A message's project never changes (record-events.ts refusedProjects): the first known.
    projectId: current.projectId ?? event.projectId,
    from: event.from ?? current.from,
    to: event.to ?? current.to,
    // The provider's own counts beat the proxy's estimate, so the latest known value wins.
    numSegments: event.numSegments ?? current.numSegments,
    numMedia: event.numMedia ?? current.numMedia,
    // The send knows what it sent (SendAsMms, media, the native answer's `kind`); a callback's
    // NumMedia is only a guess — an MMS sent with SendAsMms and no media says 0 — and a
    // callback can beat the proxy's record of the send. MMS has no delivery receipt, so taken
    // for an SMS it would be swept at `sent` and end stuck (DESIGN §11).
    kind: send?.kind ?? current.kind ?? kindFromMedia(event.numMedia),
    // '' is a message redacted at SignalWire (redaction.ts): not even its send's record, late
    // (a commit timed out, the spool), brings the text back.
    body: current.body === '' ? '' : (send?.body ?? current.body ?? callbackBody(event)),
    ref: current.ref ?? send?.ref ?? event.tokenRef ?? null,
    sentViaProxy: current.sentViaProxy || send !== undefined,
    clientStatusCallback: current.clientStatusCallback ?? send?.clientStatusCallback ?? null,
    ...(moves && {
      status: event.status,
      rawStatus: event.rawStatus,
      statusRank: rank,
      // Both times of the one event that now stands for the status: what isLater compares.
      statusProviderTimestamp: event.providerTimestamp,
      statusReceivedAt: event.receivedAt,
    }),
    errorCode: takesError ? event.errorCode : current.errorCode,
    errorMessage: takesError ? event.errorMessage : current.errorMessage,
    conflict: current.conflict || conflict,
    // The first-seen time never moves (an event replayed from the spool can be older): lists
    // ordered by it cannot skip or repeat, and the stats never move a message between minutes.
    createdAt: current.createdAt,
    lastEventAt: event.receivedAt > current.lastEventAt ? event.receivedAt : current.lastEventAt,
    firstTerminalAt:
      current.firstTerminalAt ??
      (wins && rank >= TERMINAL_RANK && current.statusRank < TERMINAL_RANK
        ? event.receivedAt
        : null),
  };
}

function initialState(event: StatusEvent, rank: number): MessageState {
  return {
    id: event.messageId,
    api: event.api,
    projectId: event.projectId,
    from: event.from,
    to: event.to,
    kind: event.send?.kind ?? kindFromMedia(event.numMedia),
    body: event.send?.body ?? callbackBody(event),
    status: event.status,
    rawStatus: event.rawStatus,
    statusRank: rank,
    statusProviderTimestamp: event.providerTimestamp,
    statusReceivedAt: event.receivedAt,
    errorCode: event.errorCode,
    errorMessage: event.errorMessage,
    conflict: false,
    numSegments: event.numSegments,
    numMedia: event.numMedia,
    ref: event.send?.ref ?? event.tokenRef ?? null,
    sentViaProxy: event.send !== undefined,
    clientStatusCallback: event.send?.clientStatusCallback ?? null,
    createdAt: event.receivedAt,
    lastEventAt: event.receivedAt,
    firstTerminalAt: rank >= TERMINAL_RANK ? event.receivedAt : null,
  };
}

/** Whether two states hold the same values (dates compared by time). */
export function sameState(a: MessageState, b: MessageState): boolean {
  return (Object.keys(a) as Array<keyof MessageState>).every((key) => {
    const x = a[key];
    const y = b[key];
    return x instanceof Date && y instanceof Date ? x.getTime() === y.getTime() : x === y;
  });
}

/**
 * Whether the event is later than the one standing for the current status (DESIGN §3: the
 * later provider timestamp, then receive time), as ONE order of events: an event without a
 * provider timestamp — a compatibility callback, or a reconciliation lookup, which says what
 * SignalWire held when asked — or with one far ahead of its receipt is placed at its receive
 * time. Comparing provider timestamps when both events have one and receive times otherwise is
 * no order (A later than B, B than C and C than A), and the winner of a conflict then depended
 * on arrival order.
 */
function isLater(event: StatusEvent, current: MessageState): boolean {
  const a = orderTime(event.providerTimestamp, event.receivedAt);
  const b = orderTime(current.statusProviderTimestamp, current.statusReceivedAt);
  if (a !== b) return a > b;
  const received = event.receivedAt.getTime();
  const standing = current.statusReceivedAt.getTime();
  if (received !== standing) return received > standing;
  // A tie on both times — two compatibility callbacks (no provider timestamp) received in the
  // same millisecond, by one replica or two — is broken by the status's name, then SignalWire's
  // own spelling of it, so the outcome does not depend on which was applied first:
  // `undelivered`, then `failed`, win over `delivered`.
  return event.status !== current.status
    ? event.status > current.status
    : event.rawStatus > current.rawStatus;
}

// How far a provider timestamp may run ahead of our receipt of the callback that carries it.
// SignalWire stamps an event before it calls us, so a later stamp is the two clocks' skew:
// seconds. One more than an hour ahead (year 9999, a time zone read as UTC) is not a time the
// event happened, and ordering by it would let that event win every later conflict for good.
const PROVIDER_CLOCK_AHEAD_MS = 60 * 60 * 1000;

/**
 * Where an event stands in the order of conflicts: its provider timestamp, unless that is
 * implausibly ahead of its receipt, then its receive time — the same rule for the event and
 * for the one standing, so that it stays one order.
 */
function orderTime(providerTimestamp: Date | null, receivedAt: Date): number {
  return (plausibleProviderTime(providerTimestamp, receivedAt) ?? receivedAt).getTime();
}

/** A provider timestamp as a time the event happened: null when missing or implausibly late. */
export function plausibleProviderTime(
  providerTimestamp: Date | null,
  receivedAt: Date,
): Date | null {
  if (providerTimestamp === null) return null;
  return providerTimestamp.getTime() > receivedAt.getTime() + PROVIDER_CLOCK_AHEAD_MS
    ? null
    : providerTimestamp;
}

function kindFromMedia(numMedia: number | null): 'sms' | 'mms' | null {
  if (numMedia === null) return null;
  return numMedia > 0 ? 'mms' : 'sms';
}

/**
 * The message's text as a callback or a lookup carries it (cXML `Body`, native and REST
 * `body`), for a message the proxy did not send: its payload keeps the text only with
 * STORE_BODY=true (normalization removes it otherwise), so this is null unless bodies are
 * stored. The proxy's own record, when there is one, wins: it is what was sent.
 */
function callbackBody(event: StatusEvent): string | null {
  // Only the spelling normalization removes without STORE_BODY: a cXML callback's `Body`, a
  // native callback's or a lookup's `body`. The other one is just another field of the payload.
  const key = event.api === 'cxml' && event.source !== 'reconcile' ? 'Body' : 'body';
  const text = event.raw[key];
  return typeof text === 'string' && text !== '' ? text : null;
}
