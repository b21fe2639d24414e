import { callbackUrlProblem } from '../signalwire/send-rules';
import type { SignalWireClient } from './signalwire-client';

/**
 * Where SignalWire would have sent a compatibility send's callbacks when it names an
 * `ApplicationSid` and no `StatusCallback` (SIGNALWIRE.md: "set by StatusCallback on create,
 * or the SmsStatusCallback of the cXML Application named by ApplicationSid"). The proxy puts
 * its own URL in the send, which then takes the Application's place, so it reads the
 * Application's URL first and relays the callbacks there as it does for `StatusCallback`.
 *
 * The Application is read with the caller's own credentials (the proxy holds none of its
 * own), so a caller only ever learns its own project's Applications. Answers are kept for
 * TTL_MS per project and Application: a burst of sends costs one lookup, and a changed
 * Application is followed within a minute. The sends of a burst start together, before any
 * read has come back: those with the same credentials wait for the one read in flight. A
 * failed lookup is not kept, and does not stop the send: the message is still stored, only
 * its callbacks are not relayed (the caller is told so in the log).
 */

export type ApplicationLookup =
  /** The Application's message status callback, or null when it has none. */
  | { ok: true; url: string | null }
  /** No usable answer: SignalWire's status (401, 404, …) or why there was none. */
  | { ok: false; reason: string };

export interface ApplicationCallbacks {
  lookup(
    projectId: string,
    applicationSid: string,
    authorization: string | undefined,
  ): Promise<ApplicationLookup>;
}

const TTL_MS = 60_000;
/** Applications kept at once; a project holds at most 1,000 (Twilio's documented limit). */
const MAX_KEPT = 1_000;

export function createApplicationCallbacks(
  signalwire: SignalWireClient,
  clock: () => number = Date.now,
): ApplicationCallbacks {
  // Insertion order is age order: the first entry is the oldest, dropped first when full.
  const kept = new Map<string, { url: string | null; until: number }>();
  // Reads in flight, by key and credentials: other credentials (wrong ones, say) read for
  // themselves, so a read refused to one caller is never another's answer.
  const reading = new Map<string, Promise<ApplicationLookup>>();

  async function read(
    projectId: string,
    applicationSid: string,
    authorization: string | undefined,
  ): Promise<ApplicationLookup> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (authorization !== undefined) headers['authorization'] = authorization;
    const result = await signalwire.send({
      method: 'GET',
      // Both ids passed the send rules' checks (a UUID, the caller's own project): no
      // character here can leave the path.
      target: `/api/laml/2010-04-01/Accounts/${encodeURIComponent(projectId)}/Applications/${encodeURIComponent(applicationSid)}.json`,
      headers,
      body: Buffer.alloc(0),
    });
    if (!result.ok) return { ok: false, reason: result.failure };
    const { status, body } = result.response;
    if (status !== 200) return { ok: false, reason: `SignalWire answered ${status}` };
    const url = callbackOf(body);
    if (url === undefined) return { ok: false, reason: 'the answer is not an Application' };
    // The same rules as a StatusCallback given on the send (the relay signs for it as written).
    const problem = url === null ? null : callbackUrlProblem(url);
    if (problem !== null) return { ok: false, reason: `its status callback URL ${problem}` };
    return { ok: true, url };
  }

  return {
    async lookup(projectId, applicationSid, authorization) {
      const key = `${projectId}/${applicationSid.toLowerCase()}`;
      const now = clock();
      const hit = kept.get(key);
      if (hit && hit.until > now) return { ok: true, url: hit.url };
      kept.delete(key);
      const flight = `${key}\n${authorization ?? ''}`;
      let pending = reading.get(flight);
      if (pending === undefined) {
        pending = read(projectId, applicationSid, authorization).then((found) => {
          if (found.ok) {
            if (kept.size >= MAX_KEPT) kept.delete(kept.keys().next().value!);
            kept.set(key, { url: found.url, until: now + TTL_MS });
          }
          return found;
        });
        reading.set(flight, pending);
        const forget = (): void => void reading.delete(flight);
        pending.then(forget, forget);
      }
      return pending;
    },
  };
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
