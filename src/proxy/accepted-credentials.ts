import { createHmac, randomBytes } from 'node:crypto';
import { parseBasicAuth } from '../signalwire/basic-auth';
import type { SignalWireClient, UpstreamRequest, UpstreamResult } from './signalwire-client';

/**
 * Which callers' credentials SignalWire has lately accepted, as this process saw its answers.
 * The proxy never checks a password (SignalWire does): a deletion that got no answer may only
 * erase the stored text when SignalWire is known to take the credentials that asked for it
 * (pass-through.routes.ts forgetRedactedText). Otherwise anyone on the internal network with a
 * project's id and any password could erase that project's texts whenever SignalWire is slow.
 *
 * Only a 2xx counts as accepted: a 404, a 400, a 429 or a 5xx can come from routing, a
 * gateway or a rate limiter before the credentials are looked at, and a pass-through caller
 * picks the path. A 401 drops the credentials (SignalWire no longer takes them: a revoked
 * token); a 403 does not — it is SignalWire knowing the token and refusing it one resource (a
 * scoped token; application-callback.ts reads it so too). Any other answer leaves them be.
 *
 * The credentials are the Basic username and password as SignalWire reads them
 * (parseBasicAuth: `Basic` in any case, any spaces), not the header's bytes: one valid
 * credential spelled thousands of ways would otherwise fill the record and push the app's out.
 *
 * Kept in memory, per process: a replica that has not seen the app's own calls yet keeps the
 * text (and says so). No password is kept, only an HMAC of the credentials under a key made at
 * start-up, so the record cannot be tried against guesses.
 */
export interface AcceptedCredentials {
  /** Whether SignalWire accepted this Authorization value within the last ACCEPTED_FOR_MS. */
  has(authorization: string | undefined): boolean;
  /** SignalWire answered a call made with this Authorization value `status`. */
  answered(authorization: string | undefined, status: number): void;
}

/** An app that sends or reads through the proxy renews its entry far more often than this. */
const ACCEPTED_FOR_MS = 60 * 60_000;
/** Credentials kept at once: a project holds a handful of API tokens, a deployment a few projects. */
const MAX_KEPT = 4_096;

export function createAcceptedCredentials({
  // Monotonic: a wall clock stepped back would keep an acceptance for longer than an hour.
  clock = () => performance.now(),
  maxKept = MAX_KEPT,
}: { clock?: () => number; maxKept?: number } = {}): AcceptedCredentials {
  const key = randomBytes(32);
  // Insertion order is use order: the first entry is the least recently accepted.
  const acceptedUntil = new Map<string, number>();
  // Null for a header that is not Basic credentials: never accepted.
  const digest = (authorization: string | undefined): string | null => {
    const credentials = parseBasicAuth(authorization);
    if (!credentials) return null;
    const { username, password } = credentials;
    // The username never holds a colon (parseBasicAuth splits at the first): unambiguous.
    return createHmac('sha256', key).update(`${username}:${password}`).digest('base64url');
  };

  return {
    has(authorization) {
      const id = digest(authorization);
      if (id === null) return false;
      const until = acceptedUntil.get(id);
      if (until === undefined) return false;
      if (until <= clock()) {
        acceptedUntil.delete(id);
        return false;
      }
      return true;
    },
    answered(authorization, status) {
      const id = digest(authorization);
      if (id === null) return;
      if (status === 401) {
        acceptedUntil.delete(id);
        return;
      }
      if (status < 200 || status > 299) return;
      acceptedUntil.delete(id);
      acceptedUntil.set(id, clock() + ACCEPTED_FOR_MS);
      for (const oldest of acceptedUntil.keys()) {
        if (acceptedUntil.size <= maxKept) break;
        acceptedUntil.delete(oldest);
      }
    },
  };
}

/**
 * The client every upstream call of the app goes through (app.ts), telling `accepted` of each
 * answer: the proxy's sends, the calls passed through, the Application reads.
 */
export function recordingAccepted(
  client: SignalWireClient,
  accepted: AcceptedCredentials,
): SignalWireClient {
  const noted = <B>(request: UpstreamRequest, result: UpstreamResult<B>): UpstreamResult<B> => {
    if (result.ok) accepted.answered(request.headers['authorization'], result.response.status);
    return result;
  };
  return {
    baseUrl: client.baseUrl,
    send: async (request) => noted(request, await client.send(request)),
    forward: async (request) => noted(request, await client.forward(request)),
  };
}
