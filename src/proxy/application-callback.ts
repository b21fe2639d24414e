import { createHash } from 'node:crypto';
import type { SignalwireCredential } from '../config';
import { basicAuthHeader } from '../signalwire/basic-auth';
import { callbackUrlProblem } from '../signalwire/send-rules';
import type { SignalWireClient } from './signalwire-client';

/**
 * Where SignalWire would have sent a compatibility send's callbacks when it names an
 * `ApplicationSid` and no `StatusCallback` (SIGNALWIRE.md: "set by StatusCallback on create,
 * or the SmsStatusCallback of the cXML Application named by ApplicationSid"). The proxy puts
 * its own URL in the send, which then takes the Application's place, so it reads the
 * Application's URL first and relays the callbacks there as it does for `StatusCallback`.
 *
 * The Application is read with the caller's own credentials, so a caller only ever learns its
 * own project's Applications. A token may be scoped to messaging alone: when SignalWire
 * refuses it the read (403), the project's own token in SIGNALWIRE_CREDENTIALS, if any, reads
 * it instead. The URL is never shown to the caller, only relayed to.
 *
 * Answers are kept for TTL_MS per project and Application: a burst of sends costs one lookup,
 * and a changed Application is followed within a minute. The sends of a burst start together,
 * before any read has come back: those with the same credentials wait for the one read in
 * flight. When a read fails (SignalWire slow, rate limiting, a gateway's error page) the last
 * answer read within MAX_STALE_MS stands: an Application's callback changes seldom, and a failed
 * read would otherwise cost the send's callbacks their relay. A failed lookup does not stop
 * the send: it goes out naming the Application as given, and its callbacks are not relayed —
 * nor stored, should SignalWire let the Application's callback win (proxy.service.ts,
 * relayTarget; the log says so).
 *
 * A refusal (401, 403 — a token scoped to messaging alone, with no project token to fall back
 * on — or 404, 410) is kept for TTL_MS too, for those credentials only: every send of such an
 * app would otherwise wait for a SignalWire round trip that answers the same, and a token
 * given the permission, or an Application created, is followed within a minute.
 */

export type ApplicationLookup =
  /** The Application's message status callback, or null when it has none. */
  | { ok: true; url: string | null }
  /** No usable answer: SignalWire's status (401, 404, …) or why there was none. */
  | { ok: false; reason: string };

export interface ApplicationCallbacks {
  /**
   * `projectId`: the caller's project in lower case (proxy-http.ts checkCaller), which answers
   * are kept by. `projectIdAsWritten`: as the caller wrote it in its credentials, the path's
   * account of a read made with them: SignalWire's rules on its case are not known, and the
   * simulator holds the path's account to the credentials' exactly. Required: a default to the
   * lower-case id would send a caller's own read under an account its credentials do not name.
   */
  lookup(
    projectId: string,
    applicationSid: string,
    authorization: string | undefined,
    projectIdAsWritten: string,
  ): Promise<ApplicationLookup>;
}

/**
 * A lookup, or a read SignalWire refused to the credentials it was made with (401, 403), or
 * one that found no such Application (404, 410).
 */
type Read =
  | ApplicationLookup
  | { ok: false; reason: string; refused: 401 | 403 }
  | { ok: false; reason: string; gone: true };

const TTL_MS = 60_000;
/** How long an answer stands in for failed reads. */
const MAX_STALE_MS = 24 * 60 * 60_000;
/** Applications kept at once; a project holds at most 1,000 (Twilio's documented limit). */
const MAX_KEPT = 1_000;

export function createApplicationCallbacks(
  signalwire: SignalWireClient,
  {
    // Monotonic: a wall clock stepped back would keep a refusal (or an acceptance) for longer.
    clock = () => performance.now(),
    credentials = new Map<string, SignalwireCredential>(),
  }: {
    clock?: () => number;
    /**
     * SIGNALWIRE_CREDENTIALS: lower-case project id → its credentials, for reads a caller's
     * token may not make.
     */
    credentials?: ReadonlyMap<string, SignalwireCredential>;
  } = {},
): ApplicationCallbacks {
  // Insertion order is age order: the first entry is the oldest, dropped first when full.
  const kept = new Map<string, { url: string | null; readAt: number }>();
  // Reads in flight, by key and credentials: other credentials (wrong ones, say) read for
  // themselves, so a read refused to one caller is never another's answer.
  const reading = new Map<string, Promise<ApplicationLookup>>();
  // Refusals by key and a hash of the credentials (kept credentials would outlive the request).
  const refused = new Map<string, { reason: string; readAt: number }>();

  async function read(
    projectId: string,
    applicationSid: string,
    authorization: string | undefined,
    projectIdAsWritten: string,
  ): Promise<Read> {
    const found = await readAs(projectIdAsWritten, applicationSid, authorization);
    const own = credentials.get(projectId);
    // Only a token SignalWire knows but does not let read Applications (403): a 401 is a
    // token it does not know, whose send it refuses anyway.
    if (found.ok || own === undefined || !('refused' in found) || found.refused !== 403) {
      return found;
    }
    // The project as the operator wrote it, in the path as in the username.
    const ownAuthorization = basicAuthHeader(own.projectIdAsWritten, own.token);
    if (ownAuthorization === authorization) return found;
    return readAs(own.projectIdAsWritten, applicationSid, ownAuthorization);
  }

  /** `account`: the project as the credentials name it. */
  async function readAs(
    account: string,
    applicationSid: string,
    authorization: string | undefined,
  ): Promise<Read> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (authorization !== undefined) headers['authorization'] = authorization;
    const result = await signalwire.send({
      method: 'GET',
      // Both ids passed the send rules' checks (a UUID, the caller's own project): no
      // character here can leave the path.
      target: `/api/laml/2010-04-01/Accounts/${encodeURIComponent(account)}/Applications/${encodeURIComponent(applicationSid)}.json`,
      headers,
      body: Buffer.alloc(0),
    });
    if (!result.ok) return { ok: false, reason: result.failure };
    const { status, body } = result.response;
    if (status === 401 || status === 403) {
      return { ok: false, reason: `SignalWire answered ${status}`, refused: status };
    }
    if (status === 404 || status === 410) {
      return { ok: false, reason: `SignalWire answered ${status}`, gone: true };
    }
    if (status !== 200) return { ok: false, reason: `SignalWire answered ${status}` };
    const url = callbackOf(body);
    if (url === undefined) return { ok: false, reason: 'the answer is not an Application' };
    // The same rules as a StatusCallback given on the send (the relay signs for it as written).
    const problem = url === null ? null : callbackUrlProblem(url);
    if (problem !== null) return { ok: false, reason: `its status callback URL ${problem}` };
    return { ok: true, url };
  }

  return {
    async lookup(projectId, applicationSid, authorization, projectIdAsWritten) {
      const key = `${projectId}/${applicationSid.toLowerCase()}`;
      const now = clock();
      const hit = kept.get(key);
      if (hit && hit.readAt + TTL_MS > now) return { ok: true, url: hit.url };
      if (hit && hit.readAt + MAX_STALE_MS <= now) kept.delete(key);
      const flight = `${key}\n${credentialsHash(authorization)}`;
      const refusal = refused.get(flight);
      if (refusal && refusal.readAt + TTL_MS > now) {
        return { ok: false, reason: `${refusal.reason} (asked again after a minute)` };
      }
      if (refusal) refused.delete(flight);
      let pending = reading.get(flight);
      if (pending === undefined) {
        pending = read(projectId, applicationSid, authorization, projectIdAsWritten).then(
          (found) => {
            if (found.ok) {
              keepNewest(kept, key, { url: found.url, readAt: now });
              return found;
            }
            // A refusal is this caller's own (its credentials): never answered from another's
            // read. An Application that is gone has no callback any more.
            if ('gone' in found) kept.delete(key);
            if ('refused' in found || 'gone' in found) {
              keepNewest(refused, flight, { reason: found.reason, readAt: now });
              return { ok: false, reason: found.reason };
            }
            const last = kept.get(key);
            return last ? { ok: true, url: last.url } : { ok: false, reason: found.reason };
          },
        );
        reading.set(flight, pending);
        const forget = (): void => void reading.delete(flight);
        pending.then(forget, forget);
      }
      return pending;
    },
  };
}

/**
 * Sets a key as the map's newest entry (re-inserted, so the map's order stays the order of the
 * reads), dropping the oldest past MAX_KEPT.
 */
function keepNewest<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  if (map.size >= MAX_KEPT) map.delete(map.keys().next().value!);
  map.set(key, value);
}

function credentialsHash(authorization: string | undefined): string {
  return createHash('sha256')
    .update(authorization ?? '')
    .digest('base64url');
}

/**
 * The Application's message status callback: `message_status_callback`, or its older name
 * `sms_status_callback` (SignalWire's Application resource carries both). Undefined when the
 * answer is not an Application at all; null when the Application has no callback.
 */
function callbackOf(body: Buffer): string | null | undefined {
  let answer: unknown;
  try {
    answer = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) return undefined;
  const fields = answer as Record<string, unknown>;
  for (const name of ['message_status_callback', 'sms_status_callback']) {
    const value = fields[name];
    if (typeof value === 'string' && value.trim() !== '') return value.trim();
  }
  return null;
}
