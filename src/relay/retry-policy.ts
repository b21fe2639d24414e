/**
 * What one relay attempt leads to (DESIGN §10). Pure: the worker applies the decision.
 * A 2xx answer within RELAY_TIMEOUT_MS is delivered; anything else — 3xx included, since
 * redirects are never followed — waits for the next step of RELAY_RETRY_SCHEDULE, and after
 * the last step the job is dead. A destination the address policy refuses is dead at once:
 * retrying would only be refused again. A job that comes due while its host is paused by the
 * circuit breaker uses up that step of the schedule without a request (`paused`): the schedule
 * is the relay's promise of when it gives up, and a host that stays down must not keep its
 * relays pending for ever, unseen by the dead-relay metrics and alerts.
 */

export type AttemptResult =
  | { kind: 'answered'; status: number }
  | { kind: 'failed'; error: string }
  | { kind: 'refused'; reason: string }
  | { kind: 'paused'; error: string };

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
  const error = describeFailure(result);
  const delayMs = schedule[attempts];
  if (delayMs === undefined) {
    return { state: 'dead', status, error: `${error} (after ${attempts + 1} attempts)` };
  }
  return { state: 'pending', delayMs, status, error };
}

/** Why an attempt did not deliver, as `last_error` says it. */
export function describeFailure(result: Exclude<AttemptResult, { kind: 'refused' }>): string {
  if (result.kind !== 'answered') return result.error;
  const { status } = result;
  if (status >= 300 && status < 400) return `HTTP ${status}: redirects are not followed`;
  return `HTTP ${status}`;
}

/** Whether an attempt's outcome counts against its host (circuit breaker). */
export function isHostFailure(result: AttemptResult): boolean {
  // Refused by our own policy, or not sent at all (paused): nothing was learned of the host.
  if (result.kind === 'refused' || result.kind === 'paused') return false;
  if (result.kind === 'failed') return true;
  // The app answered: only overload and server errors say the host is in trouble.
  return result.status === 408 || result.status === 429 || result.status >= 500;
}
