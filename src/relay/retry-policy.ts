/**
 * What one relay attempt leads to (DESIGN §10). Pure: the worker applies the decision.
 * A 2xx answer within RELAY_TIMEOUT_MS is delivered; anything else — 3xx included, since
 * redirects are never followed — waits for the next step of RELAY_RETRY_SCHEDULE, and after
 * the last step the job is dead. A destination the address policy refuses is dead at once:
 * retrying would only be refused again.
 */

export type AttemptResult =
  | { kind: 'answered'; status: number }
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
  const delayMs = schedule[attempts];
  if (delayMs === undefined) {
    return { state: 'dead', status, error: `${error} (after ${attempts + 1} attempts)` };
  }
  return { state: 'pending', delayMs, status, error };
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
