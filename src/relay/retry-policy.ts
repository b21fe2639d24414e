/**
 * What one relay attempt leads to (DESIGN §10). Pure: the worker applies the decision.
 * A 2xx answer within RELAY_TIMEOUT_MS is delivered; anything else — 3xx included, since
 * redirects are never followed — waits for the next step of RELAY_RETRY_SCHEDULE, and after
 * the last step the job is dead. A destination the address policy refuses is dead at once:
 * retrying would only be refused again. An app that answers 429 or 503 with Retry-After is
 * not asked again before it said (up to MAX_RETRY_AFTER_MS), nor before the schedule's step:
 * the wait is the longer of the two, and it is still one attempt of the schedule's.
 */

export type AttemptResult =
  | {
      kind: 'answered';
      status: number;
      /** The answer's Retry-After in ms (http/retry-after.ts), when it gave a valid one. */
      retryAfterMs?: number;
    }
  | { kind: 'failed'; error: string }
  | { kind: 'refused'; reason: string };

export type Decision =
  | { state: 'delivered'; status: number }
  | { state: 'pending'; delayMs: number; status: number | null; error: string }
  | { state: 'dead'; status: number | null; error: string };

/** `attempts`: attempts made before this one. */
export function decide(
  result: AttemptResult,
  attempts: number,
  schedule: readonly number[],
): Decision {
  if (result.kind === 'refused') return { state: 'dead', status: null, error: result.reason };
  if (result.kind === 'answered' && result.status >= 200 && result.status < 300) {
    return { state: 'delivered', status: result.status };
  }
  const status = result.kind === 'answered' ? result.status : null;
  const error = result.kind === 'answered' ? describeStatus(result.status) : result.error;
  const step = schedule[attempts];
  if (step === undefined) {
    return { state: 'dead', status, error: `${error} (after ${attempts + 1} attempts)` };
  }
  return { state: 'pending', delayMs: Math.max(step, askedWait(result)), status, error };
}

/**
 * The longest an app's Retry-After holds a relay back: a day. Longer than any rate limit's
 * window or maintenance an app means to announce, so a real one is obeyed; a larger value is
 * more likely a mistake (milliseconds written as seconds, a date years off), and the callback —
 * the message's text with it — is kept until the relay is delivered or dead, with the message's
 * later callbacks queued behind it: uncapped, one header could hold them all for years. Not the
 * schedule's last step: a short RELAY_RETRY_SCHEDULE (`1m,5m`) would then overrule the very
 * apps that ask for more. With the cap a job lasts at most a day per attempt it has left.
 */
export const MAX_RETRY_AFTER_MS = 24 * 60 * 60_000;

/** What the app asked to wait (0: nothing): a Retry-After on 429 or 503, capped. */
function askedWait(result: AttemptResult): number {
  if (result.kind !== 'answered' || result.retryAfterMs === undefined) return 0;
  // The statuses whose Retry-After says when to come back (RFC 9110 §10.2.3, RFC 6585 §4);
  // on a redirect it would only say when to follow it, and redirects are never followed.
  if (result.status !== 429 && result.status !== 503) return 0;
  return Math.min(result.retryAfterMs, MAX_RETRY_AFTER_MS);
}

function describeStatus(status: number): string {
  if (status >= 300 && status < 400) return `HTTP ${status}: redirects are not followed`;
  return `HTTP ${status}`;
}

/** Whether an attempt's outcome counts against its host (circuit breaker). */
export function isHostFailure(result: AttemptResult): boolean {
  if (result.kind === 'refused') return false;
  if (result.kind === 'failed') return true;
  // The app answered: only overload and server errors say the host is in trouble.
  return result.status === 408 || result.status === 429 || result.status >= 500;
}
