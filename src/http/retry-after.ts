/**
 * An answer's `Retry-After` (RFC 9110 §10.2.3): a delay in seconds, or an HTTP-date. Read by
 * the lookups of SignalWire (reconcile/lookup-client.ts) and by the relay to an app's own
 * callback (relay/relay-transport.ts); each caller bounds what it obeys.
 */

/**
 * The three forms of an HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, and the obsolete RFC 850 and
 * asctime forms a recipient still accepts. Only these: Date.parse takes far more (`1.5`, `-5`,
 * `2026-12-07`), and a header that is none of them is garbage, ignored.
 */
const IMF_FIXDATE = /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/;
const RFC_850 = /^[A-Za-z]{6,9}, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/;
const ASCTIME = /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/** An HTTP-date in epoch ms; undefined when the value is not one. */
export function httpDate(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  // asctime has no zone: it is GMT, not this process's local time.
  const parsable = ASCTIME.test(text)
    ? `${text} GMT`
    : IMF_FIXDATE.test(text) || RFC_850.test(text)
      ? text
      : undefined;
  const at = parsable === undefined ? NaN : Date.parse(parsable);
  return Number.isNaN(at) ? undefined : at;
}

/**
 * A Retry-After header in ms from `now` (a date already past: 0); undefined: none, or garbage.
 * `now`: the clock the date is read against — the answer's own `Date` where the caller has it,
 * so that a server whose clock is off still means the delay it meant.
 */
export function retryAfter(value: string | null | undefined, now: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  // Any number of digits: a huge delay is bounded by the caller, never read as a date.
  if (/^\d+$/.test(text)) return Number(text) * 1_000;
  const at = httpDate(text);
  return at === undefined ? undefined : Math.max(0, at - now);
}

/**
 * An answer's Retry-After read against that answer's own `Date` (this process's clock when it
 * has none or a garbled one): a server — SignalWire, an app — whose clock is minutes off this
 * replica's still gets the wait it asked for.
 */
export function answerRetryAfter(
  value: string | null | undefined,
  date: string | null | undefined,
): number | undefined {
  return retryAfter(value, httpDate(date) ?? Date.now());
}
