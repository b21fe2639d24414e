import { providerTimestamp } from '../callbacks/normalize';
import { holdsNul, withoutNul } from '../messages/map-strings';
import type { StatusEvent } from '../messages/status-event';
import { canonicalStatus } from '../messages/statuses';
import type { Api } from '../messages/statuses';
import { resourceCount, resourceText } from '../signalwire/message-resource';

/**
 * The first event of a proxied message, made from SignalWire's answer to the create call
 * (compatibility: the Message object of seed 004; native: the body of seeds 001/003) plus
 * what only the send knows (DESIGN §5). The provider's answer wins over the request for every
 * fact it states; the request fills the gaps.
 */

export interface SendContext {
  api: Api;
  /** The callback token's ref: binds the callbacks to this send. */
  ref: string;
  /** The Basic username: the project, when the answer does not name it. */
  projectId: string;
  to: string;
  from: string | null;
  body: string | null;
  kind: 'sms' | 'mms';
  clientStatusCallback: string | null;
  receivedAt: Date;
  storeBody: boolean;
}

// Provider ids are UUIDs; anything that could not be a message id is not recorded.
const MESSAGE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/**
 * The event, or null when the answer names no message (nothing to record it under), or when
 * what names the message or its status holds a NUL (stripped, it could name another).
 */
export function sendEvent(context: SendContext, given: unknown): StatusEvent | null {
  if (!isPlainObject(given)) return null;
  const compat = context.api === 'cxml';
  // PostgreSQL can store a NUL neither in text nor in jsonb, and SignalWire may take a send
  // whose text or custom variables hold one: what is stored goes without it (the caller got
  // SignalWire's answer as it was), or the send would not be recorded at all. Never in what
  // names the message or its status: stripped, it could name another.
  if ([compat ? 'sid' : 'id', 'status', 'error_code'].some((name) => holdsNul(given[name]))) {
    return null;
  }
  const answer = holdsNul(given) ? (withoutNul(given) as Record<string, unknown>) : given;
  const messageId = resourceText(answer[compat ? 'sid' : 'id']);
  if (messageId === null || !MESSAGE_ID.test(messageId)) return null;

  // A create answers `queued`; should it ever say more, that is what the provider knows.
  const rawStatus = resourceText(answer['status']) ?? 'queued';
  const media = answer['media'];
  const answeredKind = answer['kind'];
  const kind = answeredKind === 'sms' || answeredKind === 'mms' ? answeredKind : context.kind;
  return {
    messageId,
    api: context.api,
    source: 'proxy',
    projectId: resourceText(answer[compat ? 'account_sid' : 'project_id']) ?? context.projectId,
    status: canonicalStatus(rawStatus),
    rawStatus,
    errorCode: resourceText(answer['error_code']),
    errorMessage: resourceText(answer['error_message']),
    from: resourceText(answer['from']) ?? (withoutNul(context.from) as string | null),
    to: resourceText(answer['to']) ?? (withoutNul(context.to) as string),
    numSegments: resourceCount(answer[compat ? 'num_segments' : 'number_of_segments']),
    numMedia: compat
      ? resourceCount(answer['num_media'])
      : Array.isArray(media)
        ? media.length
        : null,
    // The provider's creation time: native ISO 8601, compatibility RFC 2822.
    providerTimestamp: providerTimestamp(answer[compat ? 'date_created' : 'created_at']),
    receivedAt: context.receivedAt,
    raw: rawAnswer(answer, context.storeBody),
    send: {
      ref: context.ref,
      kind,
      clientStatusCallback: context.clientStatusCallback,
      body: context.storeBody ? (withoutNul(context.body) as string | null) : null,
    },
  };
}

/**
 * The answer as stored: without the body unless STORE_BODY=true. It is the answer the caller
 * got, so a native `status_callback_url` is already the caller's own URL, not the token URL
 * (proxy/answer-rewrite.ts): the store keeps the token's ref, which ties callbacks to the send.
 */
function rawAnswer(answer: Record<string, unknown>, storeBody: boolean): Record<string, unknown> {
  const raw: Record<string, unknown> = { ...answer };
  if (!storeBody) delete raw['body'];
  return raw;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
