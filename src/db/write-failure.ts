import { isDatabaseUnavailable } from './database-unavailable';

/**
 * Why a write failed, as far as retrying it is concerned:
 * - `unavailable`: PostgreSQL cannot be reached or cannot write at all (see
 *   database-unavailable.ts) — wait until it answers again;
 * - `transient`: this attempt lost a race or a wait (a lock or statement timeout, a deadlock,
 *   a serialization failure, a cancelled query) or the database is in a state an operator
 *   fixes (a missing migration, a system error): the same write may well succeed later;
 * - `event`: the data itself cannot be stored — PostgreSQL refuses it (data exception, class
 *   22: a bad character or value; integrity violation, class 23; program limit exceeded, class
 *   54: a value too large for an index entry, where the write path's statements are fixed and
 *   only the values vary), or our own code fails on it (an error without a SQLSTATE). Retrying
 *   the same event gives the same answer.
 *
 * Only `event` failures may take an event out of the way of the others (a dead letter): every
 * other failure is the database's or the environment's, and an acknowledged event waits for it.
 * Branch on SQLSTATE, never on message text.
 */
export type WriteFailure = 'unavailable' | 'transient' | 'event';

// Classes of errors about a value itself: a data exception (22), a program limit such as an
// index entry's size (54).
const VALUE_CLASSES = new Set(['22', '54']);
// Classes whose errors are about the values written, never about the moment or the server:
// those, and integrity violations (23).
const EVENT_CLASSES = new Set([...VALUE_CLASSES, '23']);

export function classifyWriteFailure(error: unknown): WriteFailure {
  if (isDatabaseUnavailable(error)) return 'unavailable';
  const code = sqlState(error);
  if (code === undefined) return 'event';
  return EVENT_CLASSES.has(code.slice(0, 2)) ? 'event' : 'transient';
}

/** Whether the database refused the data itself (so retrying can never succeed). */
export function isRefusedData(error: unknown): boolean {
  return inClasses(error, EVENT_CLASSES);
}

/**
 * Whether a value itself cannot be stored (VALUE_CLASSES): the request that brought it is
 * malformed. Integrity violations (class 23) are left out: the write path's statements avoid
 * them by design, so one is more likely a race or a fault of ours than the caller's, and the
 * caller should retry.
 */
export function isUnstorableValue(error: unknown): boolean {
  return inClasses(error, VALUE_CLASSES);
}

function inClasses(error: unknown, classes: ReadonlySet<string>): boolean {
  const code = sqlState(error);
  return code !== undefined && classes.has(code.slice(0, 2));
}

/** The five-character SQLSTATE of a PostgreSQL error, if the error is one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}
