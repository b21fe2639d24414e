/**
 * Canonical statuses and their rank (DESIGN §3). The current status of a message is its
 * highest-ranked event, so callbacks arriving out of order can never move it backwards.
 */
export const STATUS_RANK = {
  unknown: 0,
  queued: 10,
  receiving: 10,
  sending: 20,
  sent: 30,
  delivered: 50,
  undelivered: 50,
  failed: 50,
  received: 50,
  read: 60,
} as const;

export type CanonicalStatus = keyof typeof STATUS_RANK;
export type Api = 'cxml' | 'native';
export type EventSource = 'proxy' | 'callback' | 'reconcile' | 'replay';

export const CANONICAL_STATUSES = Object.keys(STATUS_RANK) as CanonicalStatus[];

/** Rank 50: the message has reached an end state (read, rank 60, can still follow delivered). */
export const TERMINAL_RANK = 50;

/** The final statuses (delivered, undelivered, failed, received): two of them are a conflict. */
export const TERMINAL_STATUSES = CANONICAL_STATUSES.filter(
  (status) => STATUS_RANK[status] === TERMINAL_RANK,
);

// Raw provider statuses that are spelled differently from their canonical one.
const ALIASES: Readonly<Record<string, CanonicalStatus>> = { initiated: 'sending' };

/** Maps a raw provider status to its canonical one; anything new is `unknown` (raw kept). */
export function canonicalStatus(raw: string): CanonicalStatus {
  const lower = raw.trim().toLowerCase();
  // hasOwn, not `in`: a raw status of `__proto__` or `toString` must not match Object's own keys.
  if (Object.hasOwn(ALIASES, lower)) return ALIASES[lower]!;
  return Object.hasOwn(STATUS_RANK, lower) ? (lower as CanonicalStatus) : 'unknown';
}

export function rankOf(status: CanonicalStatus): number {
  return STATUS_RANK[status];
}
