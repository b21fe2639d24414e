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
 * fact it states but the project, which the send's credentials decide; the request fills the
 * gaps.
 */

export interface SendContext {
  api: Api;
  /** The callback token's ref: binds the callbacks to this send. */
  ref: string;
  /** The Basic username, in lower case: the message's project, whatever the answer names. */
  projectId: string;
  to: string;
  from: string | null;
  body: string | null;
  kind: 'sms' | 'mms';
  clientStatusCallback: string | null;
  /**
   * A native send's `custom_variables`, as the send rules accepted them (send-rules.ts): every
   * native callback echoes them, and SignalWire's create answer does not hold them.
   */
  customVariables?: Record<string, string>;
  receivedAt: Date;
  storeBody: boolean;
}

// Provider ids are UUIDs; anything that could not be a message id is not recorded.
const MESSAGE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/**
 * The most of a send's custom_variables (as JSON, in bytes) its record keeps. The rules bound
 * their values (20 of at most 1,024 bytes) but not their keys, so a 256 KiB send could carry a
 * quarter of a megabyte of them into an event that must be recorded whatever it holds. 32 KiB
 * keeps every pair at its longest value with keys of any sensible length; more could not come
 * back in a callback anyway (the receiver takes 64 KiB, the echo with the rest of the callback).
 */
export const MAX_KEPT_CUSTOM_VARIABLES_BYTES = 32 * 1024;

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
    // The project the send was authenticated as (in lower case: proxy-http.ts checkCaller),
    // not the answer's: SignalWire answers with that one. An answer naming another (misrouted
    // or stale, from a gateway in between) tied the message to a project whose callbacks it
    // never gets: every genuine one, naming the send's project, was refused as another
    // project's (record-events.ts refusedProjects) and the app never heard of its message.
    projectId: context.projectId,
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
    raw: rawAnswer(answer, context),
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
 *
 * With the send's custom_variables, which the answer does not hold: when every callback of the
 * send is lost, the one reconciliation relays in their place must echo them like SignalWire's
 * would (reconcile.repository.ts echoedCustomVariables), or the app cannot match it to its
 * record. Kept whatever STORE_BODY says (it governs message texts only); left out when too big
 * to keep (keptCustomVariables), and when the answer has its own: the provider's word wins.
 */
function rawAnswer(answer: Record<string, unknown>, context: SendContext): Record<string, unknown> {
  const raw: Record<string, unknown> = { ...answer };
  if (!context.storeBody) delete raw['body'];
  const customVariables = keptCustomVariables(context.customVariables);
  if (customVariables !== null && !('custom_variables' in raw)) {
    raw['custom_variables'] = customVariables;
  }
  return raw;
}

/**
 * The custom_variables the record keeps: none for a compatibility send (its callbacks carry
 * none), or when they are past MAX_KEPT_CUSTOM_VARIABLES_BYTES — the send is recorded without
 * them rather than not at all, and a relay then leaves the field out rather than claim the send
 * set none. A native send that set none keeps `{}`: every native callback carries the field
 * (SIGNALWIRE.md), and an app reading `custom_variables.order_id` must not find it missing only
 * on the relay reconciliation made. Without NUL, like the rest of the record.
 */
function keptCustomVariables(
  given: Record<string, string> | undefined,
): Record<string, unknown> | null {
  if (given === undefined) return null;
  const bytes = Buffer.byteLength(JSON.stringify(given), 'utf8');
  if (bytes > MAX_KEPT_CUSTOM_VARIABLES_BYTES) return null;
  return withoutNul(given) as Record<string, unknown>;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
