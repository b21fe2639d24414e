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
 * Folds one event into a message's state (DESIGN §3). Pure, and independent of arrival
 * order for the status: the highest rank wins; between different terminal statuses of equal
 * rank the later provider timestamp (then receive time) wins and the message is flagged as a
 * conflict. An error code, once known, is only replaced by a winning event that has one; a
 * message without one takes the code of any event that brings one, whatever its rank
 * (`undelivered`, then `undelivered` + `30003` → `30003`) — except an event that lost a
 * conflict between terminal statuses: its code describes the outcome that lost.
 */
export function applyEvent(current: MessageState | null, event: StatusEvent): MessageState {
  const rank = rankOf(event.status);
  if (!current) return initialState(event, rank);

  const sameRankConflict =
    rank === current.statusRank && rank >= TERMINAL_RANK && event.status !== current.status;
  const wins = rank > current.statusRank || (sameRankConflict && isLater(event, current));
  const takesError =
    event.errorCode !== null && (wins || (current.errorCode === null && !sameRankConflict));
  const send = event.send;

  return {
    ...current,
    projectId: event.projectId ?? current.projectId,
    from: event.from ?? current.from,
    to: event.to ?? current.to,
    // The provider's own counts beat the proxy's estimate, so the latest known value wins.
    numSegments: event.numSegments ?? current.numSegments,
    numMedia: event.numMedia ?? current.numMedia,
    kind: current.kind ?? send?.kind ?? kindFromMedia(event.numMedia),
    body: send?.body ?? current.body,
    ref: current.ref ?? send?.ref ?? event.tokenRef ?? null,
    sentViaProxy: current.sentViaProxy || send !== undefined,
    clientStatusCallback: current.clientStatusCallback ?? send?.clientStatusCallback ?? null,
    ...(wins && {
      status: event.status,
      rawStatus: event.rawStatus,
      statusRank: rank,
      statusProviderTimestamp: event.providerTimestamp,
      statusReceivedAt: event.receivedAt,
    }),
    errorCode: takesError ? event.errorCode : current.errorCode,
    errorMessage: takesError ? event.errorMessage : current.errorMessage,
    conflict: current.conflict || sameRankConflict,
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
    body: event.send?.body ?? null,
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

/** Later provider timestamp wins; without two different ones, the later receive time. */
function isLater(event: StatusEvent, current: MessageState): boolean {
  const a = event.providerTimestamp;
  const b = current.statusProviderTimestamp;
  if (a && b && a.getTime() !== b.getTime()) return a > b;
  return event.receivedAt > current.statusReceivedAt;
}

function kindFromMedia(numMedia: number | null): 'sms' | 'mms' | null {
  if (numMedia === null) return null;
  return numMedia > 0 ? 'mms' : 'sms';
}
