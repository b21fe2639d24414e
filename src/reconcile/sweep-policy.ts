import type { LookupResult } from './lookup-client';

/**
 * The sweep's schedule (DESIGN §11). Pure.
 *
 * A message is due for lookup n (0-based) once its last event is older than
 * RECONCILE_SCHEDULE[n]. Each lookup that leaves it where it was moves it to the next step;
 * after the last step a message still not final is stuck and not looked up again until a new
 * event moves it (which restarts the schedule). A 404 or 401 is recorded and counts as a step:
 * it is never retried in a loop. A failure that says nothing about the message (timeout, 5xx)
 * keeps the step and waits `retryMs` before the same lookup is tried again.
 */
export type SweepOutcome =
  | { kind: 'advance'; step: number; stuck: boolean; error: string | null }
  | { kind: 'retry_later'; retryMs: number; error: string };

export function afterLookup(
  step: number,
  schedule: readonly number[],
  result: LookupResult,
): SweepOutcome {
  if (result.kind === 'failed') {
    // A tenth of the current step's wait, at least 10 s and at most 10 min.
    const retryMs = Math.min(600_000, Math.max(10_000, (schedule[step] ?? 0) / 10));
    return { kind: 'retry_later', retryMs, error: result.error };
  }
  const next = step + 1;
  const error = result.kind === 'found' ? null : result.kind; // not_found | unauthorized | no_credentials
  return { kind: 'advance', step: next, stuck: next >= schedule.length, error };
}
