/**
 * Reading fields of SignalWire's message resource, as a send's answer (src/proxy) and a
 * lookup's answer (src/reconcile) carry it: loosely typed JSON in which a field may be missing,
 * null, blank, or a number where text is expected.
 */

/** A scalar as text: error codes and ids are text, even when a JSON number. */
export function resourceText(value: unknown): string | null {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value !== 'string') return null;
  const trimmed = value.trim();
  return trimmed === '' ? null : trimmed;
}

/** A count (segments, media), at most six digits; anything else is unknown. */
export function resourceCount(value: unknown): number | null {
  const s = resourceText(value);
  return s !== null && /^\d{1,6}$/.test(s) ? Number(s) : null;
}
