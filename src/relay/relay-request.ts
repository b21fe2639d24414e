import { relayUrl } from '../signalwire/send-rules';
import { relaySigningKey, signFormParams, signJsonBody, signSha256 } from '../signalwire/signing';

/**
 * The request a relay job becomes (DESIGN §10): the callback exactly as SignalWire sent it,
 * to the caller's own URL, signed as SignalWire signs — so the app's existing
 * `validateRequest(signingKey, signature, url, params)` passes unchanged. Pure.
 *
 * - form body: base64 HMAC-SHA1 over the URL + sorted parameters (scheme B);
 * - JSON (or any other) body: hex HMAC-SHA1 over the URL + raw body (scheme A), and the
 *   `X-Signalwire-SHA256-Signature` SignalWire's JSON webhooks may carry beside it (hex
 *   HMAC-SHA256 over the same), so an app that checks that one keeps passing too;
 * - GET (a cXML Application configured for GET): the query joins the caller's URL and the
 *   signature covers that whole URL, with no parameters.
 *
 * Without any signing key (SIGNALWIRE_SIGNING_KEYS unset: callbacks are authenticated by their
 * per-send token only) the relay carries no signature header at all. An HMAC under an empty
 * key would be a signature anyone can compute: an app that checks signatures must see that
 * there is none, not one that verifies for whoever tries the empty key. Nor does it carry one
 * when the only keys are bound to other projects than the message's, or several are bound to
 * none and nothing tells which is the message's project's (signing.ts relaySigningKey).
 */
export interface RelayJobToSend {
  url: string;
  method: 'POST' | 'GET';
  contentType: string | null;
  payload: Buffer;
  signingKeyRef: string | null;
  /** The message's project (messages.project_id): picks the key when no reference does. */
  projectId: string | null;
  /**
   * The key that verified the newest signed callback of the message's project
   * (ClaimedJobRow.project_key_ref): picks among several keys bound to no project.
   */
  projectKeyRef?: string | null;
}

export interface RelayRequest {
  url: string;
  method: 'POST' | 'GET';
  headers: Record<string, string>;
  body: Buffer | null;
}

export const RELAY_USER_AGENT = 'sw-status-relay';

/**
 * `keyProjects`: per signing key, the project it is bound to (Config.signingKeyProjects);
 * `namedProjects`: the projects the configuration names (config.ts namedProjects) — absent,
 * the first of several keys bound to no project signs (signing.ts relaySigningKey).
 */
export function relayRequest(
  job: RelayJobToSend,
  signingKeys: readonly string[],
  keyProjects?: readonly (string | null)[],
  namedProjects?: ReadonlySet<string>,
): RelayRequest {
  const key = relaySigningKey(
    signingKeys,
    keyProjects,
    job.signingKeyRef,
    job.projectId,
    namedProjects && { projectRef: job.projectKeyRef ?? null, namedProjects },
  );
  const headers: Record<string, string> = { 'user-agent': RELAY_USER_AGENT };
  // A fragment (SignalWire's #rt=/#ot=/#tt= timeout overrides) is never sent: nor signed.
  const target = relayUrl(job.url);
  if (job.method === 'GET') {
    const query = job.payload.toString('utf8');
    const url = query === '' ? target : `${target}${target.includes('?') ? '&' : '?'}${query}`;
    return {
      url,
      method: 'GET',
      headers: signed(headers, key && signFormParams(key, url, [])),
      body: null,
    };
  }
  if (job.contentType !== null) headers['content-type'] = job.contentType;
  if (isForm(job.contentType)) {
    const params = [...new URLSearchParams(job.payload.toString('utf8'))];
    const signature = key && signFormParams(key, target, params);
    return { url: target, method: 'POST', headers: signed(headers, signature), body: job.payload };
  }
  const withSha256 = key
    ? { ...headers, 'x-signalwire-sha256-signature': signSha256(key, target, job.payload) }
    : headers;
  const signature = key && signJsonBody(key, target, job.payload);
  return { url: target, method: 'POST', headers: signed(withSha256, signature), body: job.payload };
}

/** The headers with the signature, or unchanged when there is no key to sign with. */
function signed(
  headers: Record<string, string>,
  signature: string | undefined,
): Record<string, string> {
  if (!signature) return headers;
  // Twilio-style libraries read X-Twilio-Signature; SignalWire's own docs name both.
  return { ...headers, 'x-signalwire-signature': signature, 'x-twilio-signature': signature };
}

function isForm(contentType: string | null): boolean {
  return (
    (contentType ?? '').split(';')[0]!.trim().toLowerCase() === 'application/x-www-form-urlencoded'
  );
}

/**
 * The names a callback gives the message's text: `Body` in the compatibility format (form or
 * JSON: DESIGN §2 accepts both), `body` in the native one.
 */
const MESSAGE_BODY_FIELDS: ReadonlySet<string> = new Set(['Body', 'body']);

/**
 * A dead job's payload without the message body (`Body` / `body`): kept so a retry through
 * the API still sends a valid callback, while the text of the message is not kept beyond the
 * relay (DESIGN §4, STORE_BODY). The signature is made at send time, so it still matches.
 * Whatever is not a form (or a GET's query) was admitted as JSON (`application/json` or a
 * `+json` type: callbacks.routes.ts), so it takes the JSON branch.
 */
export function withoutMessageBody(
  payload: Buffer,
  method: 'POST' | 'GET',
  contentType: string | null,
): Buffer {
  const text = payload.toString('utf8');
  if (method === 'GET' || isForm(contentType)) {
    const pairs = [...new URLSearchParams(text)].filter(([name]) => !MESSAGE_BODY_FIELDS.has(name));
    return Buffer.from(new URLSearchParams(pairs).toString());
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Not JSON: nothing we can tell apart from the body; keep nothing.
    return Buffer.alloc(0);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return payload;
  const fields = value as Record<string, unknown>;
  if (!Object.keys(fields).some((name) => MESSAGE_BODY_FIELDS.has(name))) return payload;
  // fromEntries defines each key as data, so even a `__proto__` field is kept as it came.
  const rest = Object.entries(fields).filter(([name]) => !MESSAGE_BODY_FIELDS.has(name));
  return Buffer.from(JSON.stringify(Object.fromEntries(rest)));
}
