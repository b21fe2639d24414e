/**
 * What no request body may make expensive, on both listeners (DESIGN §2 "No request can stall
 * the process"). Everything here is linear in the body and stops early at its limit, so the
 * worst body of the maximum size costs about what a normal one costs per byte.
 *
 * Body-size limits stay with each route (callbacks 64 KiB, send proxy 256 KiB); these are the
 * limits on what a body of that size may hold.
 */

/** A form body (or a GET query) holds at most this many parameters; a callback has ~20. */
export const MAX_FORM_PARAMETERS = 1000;

/** JSON nests at most this deep; SignalWire's callbacks and create requests nest 2–3 levels. */
export const MAX_JSON_DEPTH = 64;

/**
 * Whether a form body or query string holds more than `max` parameters, counted the way
 * URLSearchParams splits them (`&`-separated, empty parts skipped). Stops at `max + 1`, so a
 * body of 32,768 parameters costs what one of 1,001 does.
 */
export function formParametersExceed(text: string, max: number = MAX_FORM_PARAMETERS): boolean {
  let count = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('&', start);
    if (end === -1) end = text.length;
    if (end > start && ++count > max) return true;
    start = end + 1;
  }
  return false;
}

/**
 * Whether a JSON text nests objects and arrays deeper than `max`: one pass over the text,
 * before JSON.parse, so a deep body is refused before anything walks it (the parse, and every
 * recursive walk of the value after it, would otherwise be at the mercy of the stack).
 * Brackets inside strings are skipped; an invalid text is left to JSON.parse to refuse.
 */
export function jsonNestingExceeds(text: string, max: number = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Skip the string: to the next quote not escaped by a backslash.
      for (i++; i < length; i++) {
        const d = text.charCodeAt(i);
        if (d === BACKSLASH) i++;
        else if (d === QUOTE) break;
      }
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return false;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * Form pairs as fields: a repeated key becomes an array of its values, in order. Linear: an
 * array is grown in place, never copied per value. No prototype, so a parameter named
 * `__proto__`, `constructor` or `toString` is just a parameter.
 */
export function formFields(
  pairs: ReadonlyArray<readonly [string, string]>,
): Record<string, string | string[]> {
  const fields = Object.create(null) as Record<string, string | string[]>;
  for (const [key, value] of pairs) {
    const existing = fields[key];
    if (existing === undefined) fields[key] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else fields[key] = [existing, value];
  }
  return fields;
}
