import { createHash } from 'node:crypto';
import { COMPATIBILITY, NATIVE } from './error-reason-tables';
import type { Api } from './statuses';

/**
 * `error_reason`: a short text for an error code, per API (DESIGN §3). Numeric codes do not
 * mean the same at SignalWire and Twilio (30001 is "validity period exceeded" at SignalWire,
 * "queue overflow" at Twilio; 30002, 30009 and 21610 differ too): these are SignalWire's
 * meanings, from SIGNALWIRE.md "Error reasons" and RESEARCH.md §4. A code not listed has no
 * reason (null) rather than a guess.
 *
 * To add a code, add a line to the table of its API (error-reason-tables.ts). The compatibility
 * API reports numeric codes; the native API string codes — and its message logs may carry a
 * numeric one, which means what it means for the compatibility API (same provider, same code
 * list).
 */

const TABLES: Readonly<Record<Api, ReadonlyArray<Readonly<Record<string, string>>>>> = {
  cxml: [COMPATIBILITY],
  native: [NATIVE, COMPATIBILITY],
};

/** The reason for `code` under `api`, or null when the code is null or not in the table. */
export function errorReason(api: Api, code: string | null): string | null {
  if (code === null) return null;
  const key = code.trim().toLowerCase();
  for (const table of TABLES[api] ?? []) {
    // hasOwn: a code such as `__proto__` or `toString` must not match Object's own keys.
    if (Object.hasOwn(table, key)) return table[key]!;
  }
  return null;
}

/**
 * A fingerprint of the tables, part of every ETag whose answer shows a reason: after an upgrade
 * that adds or rewords one, a client's ETag from the release before must not revalidate an
 * answer whose `error_reason` is now different although its rows are not.
 */
export const ERROR_REASONS_VERSION = createHash('sha256')
  .update(JSON.stringify([COMPATIBILITY, NATIVE]))
  .digest('base64url')
  .slice(0, 12);
