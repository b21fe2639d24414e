import { withoutNul } from '../messages/map-strings';
import { MAX_INDEXED_LENGTH } from '../messages/status-event';
import type { RelayPayload, StatusEvent } from '../messages/status-event';
import { canonicalStatus, rankOf, TERMINAL_RANK } from '../messages/statuses';
import type { Api, CanonicalStatus } from '../messages/statuses';
import { resourceCount, resourceText } from '../signalwire/message-resource';

/**
 * What a lookup answer means for a message (DESIGN §11). Pure.
 *
 * The answer becomes an event with `source: reconcile`, normalized like a callback (REST
 * `initiated` is `sending`), when it tells something the message does not already say: a
 * higher status, a different final status, or an error code the message lacks. Otherwise
 * nothing is recorded: a lookup that confirms `sent` adds no history row.
 *
 * The event has no provider timestamp, like a compatibility callback, so two lookups that
 * say the same thing are one event (dedupe), and it carries a callback in SignalWire's format
 * for the relay (the app gets the same callback SignalWire failed to send). An answer the
 * message cannot take (unusableAnswer: the sweep asks first, and counts it as a failed step)
 * records nothing either; the event's project is always the message's own.
 */
export interface SweptMessage {
  id: string;
  api: Api;
  projectId: string;
  status: string;
  errorCode: string | null;
}

export function lookupEvent(
  message: SweptMessage,
  given: Record<string, unknown>,
  receivedAt: Date,
  storeBody: boolean,
  /** What the message's native callbacks echoed of the send's custom_variables, or null. */
  echoedCustomVariables: unknown = null,
  /** The key the message's callbacks were relayed under (relaySigningKeyRef), or null. */
  signingKeyRef: string | null = null,
): StatusEvent | null {
  if (unusableAnswer(message, given) !== null) return null;
  // A callback with a NUL in its id or status is refused (src/callbacks), but a lookup has
  // nobody to refuse: recording it would fail on every lookup, the lookup would count as not
  // made, and the message would be looked up again and again instead of moving on.
  const answer = withoutNul(given) as Record<string, unknown>;
  const rawStatus = resourceText(answer['status']);
  if (rawStatus === null || rawStatus.length > 64) return null;
  const status = canonicalStatus(rawStatus);
  const errorCode = resourceText(answer['error_code']);
  if (!tellsNews(message, { status, errorCode })) return null;

  const compat = message.api === 'cxml';
  const event: StatusEvent = {
    messageId: message.id,
    api: message.api,
    source: 'reconcile',
    // Always the message's own: the project decides whose credentials look it up and whether it
    // is swept at all, and an answer (a misrouting gateway's) must not move it elsewhere.
    projectId: message.projectId,
    status,
    rawStatus,
    errorCode,
    errorMessage: resourceText(answer['error_message']),
    from: resourceText(answer['from']),
    to: resourceText(answer['to']),
    numSegments: resourceCount(answer[compat ? 'num_segments' : 'number_of_segments']),
    numMedia: compat ? resourceCount(answer['num_media']) : null,
    providerTimestamp: null,
    receivedAt,
    raw: withoutBody(answer, storeBody),
  };
  // The callback SignalWire would have sent echoes the send's custom_variables; a message log
  // does not hold them, the message's earlier callbacks do.
  const customVariables = answer['custom_variables'] ?? echoedCustomVariables;
  event.relay = relayPayload(event, resourceText(answer['body']), customVariables, signingKeyRef);
  return event;
}

const INDEXED_FIELDS = ['to', 'from', 'error_code'] as const;

/**
 * Why a lookup's answer cannot be taken as this message's, or null when it can: SignalWire
 * answered, but with something asking again would not change (a failed step, not
 * unavailability: sweep-policy.ts).
 * - It names another message (`sid`, native `id`): a caching or misrouting gateway. Recording
 *   it would give this message another's outcome and relay it to the app as this one's.
 * - A field that is an index key is longer than a callback may carry (MAX_INDEXED_LENGTH).
 */
export function unusableAnswer(
  message: Pick<SweptMessage, 'id' | 'api'>,
  given: Record<string, unknown>,
): string | null {
  const answer = withoutNul(given) as Record<string, unknown>;
  const named = answer[message.api === 'cxml' ? 'sid' : 'id'];
  // An answer naming no message at all is judged by its status alone, as before.
  if (named !== undefined && named !== null) {
    const sid = resourceText(named);
    if (sid === null || sid.toLowerCase() !== message.id.toLowerCase()) {
      return 'the answer is about another message';
    }
  }
  for (const field of INDEXED_FIELDS) {
    const value = resourceText(answer[field]);
    if (value !== null && value.length > MAX_INDEXED_LENGTH)
      return `the answer's ${field} is too long`;
  }
  return null;
}

/**
 * Whether an answer's status and error code tell the message something: asked once before the
 * event is built, and again by the write against the message's locked row (a callback may have
 * told it meanwhile: src/reconcile/reconcile-worker.ts).
 */
export function tellsNews(
  message: Pick<SweptMessage, 'status' | 'errorCode'>,
  { status, errorCode }: { status: CanonicalStatus; errorCode: string | null },
): boolean {
  const current = canonicalStatus(message.status);
  const rank = rankOf(status);
  const currentRank = rankOf(current);
  if (rank > currentRank) return true;
  if (rank === currentRank && rank >= TERMINAL_RANK && status !== current) return true;
  return rank === currentRank && errorCode !== null && message.errorCode === null;
}

/**
 * The callback SignalWire would have sent (SIGNALWIRE.md "Status callbacks"): compatibility
 * as form parameters, native as a flat JSON object. Signed at relay time with the key `keyRef`
 * names; when it names none, as any relay no signature chose a key for: with the key of the
 * message's project, or one bound to no project, or unsigned (signing.ts relaySigningKey).
 */
function relayPayload(
  event: StatusEvent,
  body: string | null,
  customVariables: unknown,
  keyRef: string | null,
): RelayPayload {
  if (event.api === 'cxml') {
    const params = new URLSearchParams();
    params.append('MessageSid', event.messageId);
    // The message resource says `initiated` where callbacks say `sending`.
    params.append('MessageStatus', event.rawStatus === 'initiated' ? 'sending' : event.rawStatus);
    if (event.errorCode !== null) params.append('ErrorCode', event.errorCode);
    if (event.projectId !== null) params.append('AccountSid', event.projectId);
    if (event.from !== null) params.append('From', event.from);
    if (event.to !== null) params.append('To', event.to);
    if (body !== null) params.append('Body', body);
    if (event.numMedia !== null) params.append('NumMedia', String(event.numMedia));
    if (event.numSegments !== null) params.append('NumSegments', String(event.numSegments));
    params.append('ApiVersion', '2010-04-01');
    return {
      method: 'POST',
      contentType: 'application/x-www-form-urlencoded',
      body: Buffer.from(params.toString()).toString('base64'),
      keyRef,
    };
  }
  const payload = {
    id: event.messageId,
    project_id: event.projectId,
    status: event.rawStatus,
    to: event.to,
    from: event.from,
    ...(body !== null && { body }),
    number_of_segments: event.numSegments,
    timestamp: event.receivedAt.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    error_code: event.errorCode,
    error_message: event.errorMessage,
    ...(customVariables !== null && { custom_variables: customVariables }),
  };
  return {
    method: 'POST',
    contentType: 'application/json',
    body: Buffer.from(JSON.stringify(payload)).toString('base64'),
    keyRef,
  };
}

function withoutBody(answer: Record<string, unknown>, storeBody: boolean): Record<string, unknown> {
  if (storeBody || !('body' in answer)) return answer;
  const { body: _body, ...rest } = answer;
  return rest;
}

/**
 * What a lookup's answer says the message is: the log's `kind` (native), or `mms` for a
 * compatibility answer with media. A count of none says nothing: an MMS sent with SendAsMms and
 * no media counts none too.
 */
export function answeredKind(answer: Record<string, unknown>): 'sms' | 'mms' | null {
  const kind = answer['kind'];
  if (kind === 'sms' || kind === 'mms') return kind;
  return (resourceCount(answer['num_media']) ?? 0) > 0 ? 'mms' : null;
}
