import type { LookupResult } from './lookup-client';

/**
 * The sweep's schedule (DESIGN §11). Pure.
 *
 * A message is due for lookup n (0-based) once its last event is older than
 * RECONCILE_SCHEDULE[n]. Each lookup that leaves it where it was moves it to the next step;
 * after the last step a message still not final is stuck and not looked up again until a new
 * event moves it (which restarts the schedule). A 404 is recorded and counts as a step (so is a
 * 401/403 that is the message's own: the worker pauses the project's lookups instead when the
 * refusal is its credentials', refusalPause below):
 * it is never retried in a loop; so is any other answer that asking again would not change
 * (a failure with `unavailable: false`: another 4xx, a redirect, no message resource in it),
 * which kept the message at its step for ever, looked up every few minutes and never stuck. A
 * failure that says nothing about the message (timeout, 408, 429, 5xx) keeps the step and
 * waits `retryMs` before the same lookup is tried again.
 */
export type SweepOutcome =
  | { kind: 'advance'; step: number; stuck: boolean; error: string | null }
  | { kind: 'retry_later'; retryMs: number; error: string };

export function afterLookup(
  step: number,
  schedule: readonly number[],
  result: LookupResult,
): SweepOutcome {
  if (result.kind === 'failed' && result.unavailable !== false) {
    // A tenth of the current step's wait, at least 10 s and at most 10 min; no sooner than
    // SignalWire's Retry-After (bounded like the sweep's pause, below).
    const retryMs = Math.max(
      Math.min(600_000, Math.max(10_000, (schedule[step] ?? 0) / 10)),
      Math.min(MAX_RETRY_AFTER_MS, result.retryAfterMs ?? 0),
    );
    return { kind: 'retry_later', retryMs, error: result.error };
  }
  const next = step + 1;
  // not_found | unauthorized | no_credentials, or what SignalWire answered (HTTP 400, …)
  const error =
    result.kind === 'found' ? null : result.kind === 'failed' ? result.error : result.kind;
  return { kind: 'advance', step: next, stuck: next >= schedule.length, error };
}

/** The first pause after SignalWire was overloaded or unavailable; it doubles while it stays so. */
const FIRST_PAUSE_MS = 1_000;
const MAX_PAUSE_MS = 5 * 60_000;
/** A Retry-After is obeyed up to this long: a broken header must not stop the sweep for days. */
const MAX_RETRY_AFTER_MS = 15 * 60_000;

/**
 * How long this replica makes no lookup after the `failures`-th lookup in a row that found
 * SignalWire overloaded or unavailable (429, 5xx, no answer): RECONCILE_RATE is a ceiling, and
 * keeping it up against a service that is refusing work only prolongs its trouble. Doubling
 * from 1 s up to 5 min, and never less than its Retry-After.
 */
export function lookupPause(failures: number, retryAfterMs: number | undefined): number {
  const backoff = Math.min(
    MAX_PAUSE_MS,
    FIRST_PAUSE_MS * 2 ** Math.min(Math.max(failures, 1) - 1, 20),
  );
  return Math.max(backoff, Math.min(MAX_RETRY_AFTER_MS, retryAfterMs ?? 0));
}

/** The first pause of a project whose credentials SignalWire refused; it doubles while it stays so. */
const FIRST_REFUSAL_PAUSE_MS = 30_000;
const MAX_REFUSAL_PAUSE_MS = 15 * 60_000;

/**
 * How long this replica looks up none of a project's messages after the `refusals`-th lookup in
 * a row that SignalWire refused with the project's credentials (401/403): rotated or revoked
 * credentials are fixed by an operator, in minutes, not by asking again at RECONCILE_RATE.
 * Doubling from 30 s up to 15 min, so a fixed token is in use again within 15 min.
 */
export function refusalPause(refusals: number): number {
  return Math.min(
    MAX_REFUSAL_PAUSE_MS,
    FIRST_REFUSAL_PAUSE_MS * 2 ** Math.min(Math.max(refusals, 1) - 1, 20),
  );
}
