import { createHash, createHmac } from 'node:crypto';

/**
 * SignalWire's two request-signing schemes (SIGNALWIRE.md "Signing"). Both the receiver
 * (verification) and the simulator (signing) use these, so the two can never drift apart.
 */

/** Form parameters in the order they appeared; repeated keys stay repeated. */
export type FormParams = ReadonlyArray<readonly [string, string]>;

/** Scheme A (JSON bodies): lowercase hex HMAC-SHA1 over url + raw body. */
export function signJsonBody(key: string, url: string, rawBody: string | Buffer): string {
  return createHmac('sha1', key).update(url).update(rawBody).digest('hex');
}

/**
 * Scheme B (form bodies, Twilio-compatible): base64 HMAC-SHA1 over the url followed by every
 * parameter as key + value, sorted by key. The sort is stable so repeated keys keep their
 * order; nothing is encoded and there are no separators.
 */
export function signFormParams(key: string, url: string, params: FormParams): string {
  return signFormString(key, url, signedFormParams(params));
}

/**
 * What scheme B signs after the URL: every parameter as key + value, sorted by key (stable).
 * It depends on the parameters only, so a verifier trying several URLs and keys builds it once.
 */
export function signedFormParams(params: FormParams): string {
  const sorted = [...params].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  let signed = '';
  for (const [name, value] of sorted) signed += name + value;
  return signed;
}

/** Scheme B over the url and signedFormParams' string. */
export function signFormString(key: string, url: string, signedParams: string): string {
  // One update with one string, as signed: each update() is a call into C++, and separate
  // updates would encode a surrogate pair split across the join as two replacement characters.
  return createHmac('sha1', key)
    .update(url + signedParams)
    .digest('base64');
}

/** The `X-Signalwire-SHA256-Signature` some JSON webhooks carry: hex HMAC-SHA256 over url + body. */
export function signSha256(key: string, url: string, rawBody: string | Buffer): string {
  return createHmac('sha256', key).update(url).update(rawBody).digest('hex');
}

/** Hex SHA-256 of a raw body, compared with the `bodySHA256` query parameter. */
export function sha256Hex(rawBody: string | Buffer): string {
  return createHash('sha256').update(rawBody).digest('hex');
}

const keyRefs = new Map<string, string>();

/**
 * A reference to a signing key that can be stored without storing the key: the first 16 hex
 * digits of a SHA-256 over a fixed label and the key (the relay outbox records which key
 * verified a callback, and resolves the reference against the configured keys when it signs).
 */
export function signingKeyRef(key: string): string {
  let ref = keyRefs.get(key);
  if (ref === undefined) {
    ref = createHash('sha256').update('sw-status signing key\0').update(key).digest('hex');
    ref = ref.slice(0, 16);
    keyRefs.set(key, ref);
  }
  return ref;
}

/**
 * What picks a relay's key when no reference names a configured key and none is bound to the
 * message's project, with several keys bound to no project (relaySigningKey).
 */
export interface UnboundKeyChoice {
  /**
   * The key that verified the newest signed callback of the message's project relayed
   * (messages/project-signing-key.ts), or null: none in the history read.
   */
  projectRef: string | null;
  /**
   * The projects the deployment names (SIGNALWIRE_PROJECT_IDS, SIGNALWIRE_CREDENTIALS, the
   * keys' bindings: config.ts namedProjects), lower case.
   */
  namedProjects: ReadonlySet<string>;
}

/**
 * The key a relay is signed with (DESIGN §10), or undefined: the relay goes unsigned, as it
 * does without any key (relay-request.ts). One choice for every relay — a callback's, a dead
 * job's retried through the API, reconciliation's — made at send time from the configured keys
 * (`projects`: per key, the project it is bound to, or null; absent: none is bound):
 * - the key `ref` names: the one that verified the callback's signature, or the one
 *   reconciliation found the message's callbacks relayed under (relaySigningKeyRef);
 * - else (the callback came by its per-send token without a signature, or its key has been
 *   rotated away) the key bound to the message's `project`;
 * - else the one key bound to no project, when there is one;
 * - else, of several bound to no project: the one that verified the newest signed callback of
 *   the message's project (`unbound.projectRef`); without one, the first, only while the
 *   deployment serves one project (no project named, or only the message's: several keys are
 *   then that project's own, a rotation); else none;
 * - never a key bound to another project, nor an unbound key sw-status has no reason to take
 *   for the message's project's. Whoever holds a message's token chooses the bytes relayed (the
 *   body as received) and, through the send's StatusCallback, where they go: signed with
 *   another project's key they would be that project's webhook request, forged.
 * `unbound` absent: the first key bound to no project (one project, or a caller that knows no
 * more).
 */
export function relaySigningKey(
  keys: readonly string[],
  projects: readonly (string | null)[] | undefined,
  ref: string | null,
  project: string | null,
  unbound?: UnboundKeyChoice,
): string | undefined {
  if (ref !== null) {
    const key = keys.find((candidate) => signingKeyRef(candidate) === ref);
    if (key !== undefined) return key;
  }
  const own = project?.toLowerCase() ?? null;
  // Bound projects are lower case (config.ts); SignalWire writes project ids so too.
  const boundToOwn = own === null ? -1 : (projects?.indexOf(own) ?? -1);
  if (boundToOwn !== -1 && keys[boundToOwn] !== undefined) return keys[boundToOwn];
  const free = unboundSigningKeys(keys, projects);
  if (free.length <= 1 || unbound === undefined) return free[0];
  const { projectRef, namedProjects } = unbound;
  if (projectRef !== null) {
    const key = free.find((candidate) => signingKeyRef(candidate) === projectRef);
    if (key !== undefined) return key;
  }
  const oneProject =
    namedProjects.size === 0 ||
    (namedProjects.size === 1 && own !== null && namedProjects.has(own));
  return oneProject ? free[0] : undefined;
}

/**
 * The configured keys bound to no project (`projects`: per key, its project or null; absent:
 * none is bound), each once, in the order listed: they verify every project, and with more
 * than one of them nothing in the configuration tells which is whose (relaySigningKey, and the
 * relay's start warning and claim).
 */
export function unboundSigningKeys(
  keys: readonly string[],
  projects: readonly (string | null)[] | undefined,
): string[] {
  return [...new Set(keys.filter((_, index) => (projects?.[index] ?? null) === null))];
}
