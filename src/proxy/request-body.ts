import {
  MAX_FORM_PARAMETERS,
  MAX_JSON_DEPTH,
  formFields,
  formParametersExceed,
  jsonNestingExceeds,
} from '../http/body-limits';
import type { Api } from '../messages/statuses';
import { givenValue } from '../signalwire/send-rules';

/**
 * Reading a create request's body the way SignalWire does (compatibility: form or JSON;
 * native: JSON) and writing it back out for upstream with one field changed: the status
 * callback. Everything else goes out as the caller sent it, repeated keys in their order.
 * Parsing stays linear in the body and within the limits of http/body-limits.ts.
 */

export type FormPairs = Array<[string, string]>;

export type RequestBody = { type: 'form'; pairs: FormPairs } | { type: 'json'; value: unknown };

export type BodyProblem =
  | { problem: 'malformed'; message: string }
  | { problem: 'too_many_parameters'; message: string }
  | { problem: 'too_deep'; message: string }
  /** `field`: where the number is (`ref`, `meta.ids[2]`); see inexactNumber. */
  | { problem: 'inexact_number'; message: string; field: string };

export type BodyResult = { ok: true; body: RequestBody } | ({ ok: false } & BodyProblem);

export type BodyEncoding = 'form' | 'json';

const FORM = 'application/x-www-form-urlencoded';
/** Fatal: invalid bytes throw. A byte-order mark is kept, so JSON.parse refuses it as before. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const JSON_TYPE = 'application/json';

/** The media type without parameters, lower-case; '' when absent. */
function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

function isJsonType(type: string): boolean {
  return type === JSON_TYPE || /^application\/[^/]+\+json$/.test(type);
}

/**
 * How a body of this Content-Type is read, or null when the API does not take it (415). No
 * Content-Type means the API's usual encoding: a form for compatibility (what `curl -d`
 * means) and JSON for native. Known from the header alone, before the body is read.
 */
export function bodyEncoding(api: Api, contentType: string | undefined): BodyEncoding | null {
  const type = mediaType(contentType);
  if (api === 'cxml' && (type === FORM || type === '')) return 'form';
  if (isJsonType(type) || (api === 'native' && type === '')) return 'json';
  return null;
}

/** What the API takes, for the 415 answer. */
export function expectedContentTypes(api: Api): string {
  return api === 'cxml' ? `${FORM} or ${JSON_TYPE}` : JSON_TYPE;
}

/**
 * Parses a body in the encoding its Content-Type named (bodyEncoding). An empty body is an
 * empty set of fields, so the validation rules name what is missing.
 */
export function readRequestBody(api: Api, encoding: BodyEncoding, raw: Buffer): BodyResult {
  // Strictly: a lenient decode turns every byte that is not UTF-8 (a Latin-1 é) into U+FFFD,
  // and the message would go out with replacement characters where the sender's text was.
  let text: string;
  try {
    text = UTF8.decode(raw);
  } catch {
    return { ok: false, problem: 'malformed', message: 'The request body is not valid UTF-8' };
  }
  if (encoding === 'form') {
    if (formParametersExceed(text, MAX_FORM_PARAMETERS)) {
      return {
        ok: false,
        problem: 'too_many_parameters',
        message: `The form has more than ${MAX_FORM_PARAMETERS} parameters`,
      };
    }
    const pairs = parseForm(text);
    if (!pairs) return { ok: false, problem: 'malformed', message: 'The form body is malformed' };
    return { ok: true, body: { type: 'form', pairs } };
  }
  if (text.trim() === '') return { ok: true, body: { type: 'json', value: {} } };
  if (jsonNestingExceeds(text, MAX_JSON_DEPTH)) {
    return {
      ok: false,
      problem: 'too_deep',
      message: `The JSON body nests deeper than ${MAX_JSON_DEPTH} levels`,
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'malformed', message: 'The request body is not valid JSON' };
  }
  // Native answers a non-object with its own 422 (send-rules); compatibility fields are
  // named parameters, so anything but an object cannot be a request.
  if (api === 'cxml' && !isPlainObject(value)) {
    return { ok: false, problem: 'malformed', message: 'The JSON body must be an object' };
  }
  // Only an object goes upstream (native: send-rules refuses anything else).
  const inexact = isPlainObject(value) ? inexactNumber(text) : null;
  if (inexact !== null) {
    return {
      ok: false,
      problem: 'inexact_number',
      field: inexact.field,
      message: `The number at '${inexact.field}' cannot be passed on as sent (an integer beyond ±${Number.MAX_SAFE_INTEGER}, or outside the range of a double): send it as a string`,
    };
  }
  return { ok: true, body: { type: 'json', value } };
}

/**
 * The first number in a JSON text (one JSON.parse read) that JSON.parse does not hold as written,
 * with where it is (`ref`, `meta.ids[2]`), or null. The body goes upstream re-serialised
 * (withField), so such a number would be silently changed there: an integer beyond
 * Number.MAX_SAFE_INTEGER rounds (12345678901234567890 → 12345678901234567000) and one out of
 * a double's range becomes null (1e400). A number that only changes spelling (1.10, 1E2) is the
 * same number upstream and passes. One pass over the text, strings skipped.
 */
export function inexactNumber(text: string): { field: string } | null {
  // One entry per open object or array: the key (raw JSON string) or index being read.
  const path: Array<{ key: string; index: number; array: boolean }> = [];
  let readingKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    const top = path.at(-1);
    if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (readingKey && top) top.key = text.slice(start, i + 1);
      readingKey = false;
    } else if (c === '{' || c === '[') {
      path.push({ key: '', index: 0, array: c === '[' });
      readingKey = c === '{';
    } else if (c === '}' || c === ']') {
      path.pop();
    } else if (c === ',' && top) {
      top.index++;
      readingKey = !top.array;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      NUMBER.lastIndex = i;
      const literal = NUMBER.exec(text)![0];
      if (!holdsExactly(literal)) return { field: fieldPath(path) };
      i += literal.length - 1;
    }
  }
  return null;
}

const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/**
 * Out of a double's range (null once re-serialised), or of magnitude 2^53 or more below 1e21
 * however written: JSON.stringify writes those as plain integers (1.2345678901234567e19 goes as
 * 12345678901234567000), which SignalWire's Rails reads as an exact Integer — another value
 * than the caller's (an integer beyond 2^53 − 1 rounds; a fraction or exponent was a Float). Below
 * 2^53 a re-spelling is the same number; from 1e21 up it keeps its exponent, a Float again.
 */
function holdsExactly(literal: string): boolean {
  const value = Number(literal);
  if (!Number.isFinite(value)) return false;
  const size = Math.abs(value);
  return size <= Number.MAX_SAFE_INTEGER || (size >= 1e21 && !/^-?\d+$/.test(literal));
}

function fieldPath(path: ReadonlyArray<{ key: string; index: number; array: boolean }>): string {
  return path
    .map((entry, depth) => {
      if (entry.array) return `[${entry.index}]`;
      const key = JSON.parse(entry.key) as string;
      return depth === 0 ? key : `.${key}`;
    })
    .join('');
}

/**
 * `application/x-www-form-urlencoded`, strictly: a broken percent escape is a malformed body
 * (URLSearchParams would pass it through as text and the provider would see other values).
 */
export function parseForm(text: string): FormPairs | null {
  const pairs: FormPairs = [];
  for (const part of text.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    try {
      pairs.push([decodeFormComponent(key), decodeFormComponent(value)]);
    } catch {
      return null;
    }
  }
  return pairs;
}

function decodeFormComponent(text: string): string {
  return decodeURIComponent(text.replace(/\+/g, ' '));
}

/** The fields the validation rules read, whichever encoding the caller used. */
export function requestFields(body: RequestBody): unknown {
  return body.type === 'form' ? formFields(body.pairs) : body.value;
}

export interface EncodedBody {
  contentType: string;
  text: string;
}

/**
 * The body for upstream: the caller's fields with `field` set to `value`, in the caller's
 * encoding. The callback takes the place of the caller's (a repeated one collapses to ours)
 * or goes last when the caller gave none. A form's repeated `singleValued` key keeps one value
 * in its first place, the one the rules validated and the service records (givenValue: the first
 * that is not empty): which of two `To`s the provider would pick is not ours to guess. A JSON
 * list given for such a key is cut to that item for the same reason (a JSON object cannot repeat
 * a key once parsed). The `omit` keys are
 * left out.
 */
export function withField(
  body: RequestBody,
  field: string,
  value: string,
  singleValued: readonly string[] = [],
  omit: readonly string[] = [],
): EncodedBody {
  if (body.type === 'form') {
    // The callback field is single-valued too: only its first place is kept, with our value.
    const given = new Map<string, string>();
    for (const key of singleValued) {
      const values = body.pairs.filter(([k]) => k === key).map(([, v]) => v);
      if (values.length > 0) given.set(key, givenValue(values)!);
    }
    const pairs: FormPairs = [];
    const seen = new Set<string>();
    for (const [key, v] of body.pairs) {
      if (omit.includes(key)) continue;
      if (key !== field && !singleValued.includes(key)) pairs.push([key, v]);
      else if (!seen.has(key)) {
        seen.add(key);
        pairs.push([key, key === field ? value : given.get(key)!]);
      }
    }
    if (!seen.has(field)) pairs.push([field, value]);
    return { contentType: FORM, text: new URLSearchParams(pairs).toString() };
  }
  // Only objects get this far (see readRequestBody and the native rules). Spreading keeps an
  // existing key's position and defines own properties, `__proto__` included.
  const object: Record<string, unknown> = { ...(isPlainObject(body.value) ? body.value : {}) };
  // A JSON list given for a single-valued key goes out as the item the rules validated and the
  // service records (givenValue), just as a form's repeated key does above.
  for (const key of singleValued) {
    const given = Object.hasOwn(object, key) ? object[key] : undefined;
    if (Array.isArray(given)) object[key] = givenValue(given);
  }
  for (const key of omit) delete object[key];
  return { contentType: JSON_TYPE, text: JSON.stringify({ ...object, [field]: value }) };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
