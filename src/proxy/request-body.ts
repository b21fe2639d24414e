import type { Api } from '../messages/statuses';

/**
 * Reading a create request's body the way SignalWire does (compatibility: form or JSON;
 * native: JSON) and writing it back out for upstream with one field changed: the status
 * callback. Everything else goes out as the caller sent it, repeated keys in their order.
 */

export type FormPairs = Array<[string, string]>;

export type RequestBody = { type: 'form'; pairs: FormPairs } | { type: 'json'; value: unknown };

export type BodyProblem =
  | { problem: 'unsupported_media_type'; message: string }
  | { problem: 'malformed'; message: string };

export type BodyResult = { ok: true; body: RequestBody } | ({ ok: false } & BodyProblem);

const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';

/** The media type without parameters, lower-case; '' when absent. */
function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

function isJsonType(type: string): boolean {
  return type === JSON_TYPE || /^application\/[^/]+\+json$/.test(type);
}

/**
 * Parses a body by its Content-Type. No Content-Type means the API's usual encoding: a form
 * for compatibility (what `curl -d` means) and JSON for native. An empty body is an empty set
 * of fields, so the validation rules name what is missing.
 */
export function readRequestBody(
  api: Api,
  contentType: string | undefined,
  raw: Buffer,
): BodyResult {
  const type = mediaType(contentType);
  const text = raw.toString('utf8');
  const asForm = api === 'cxml' && (type === FORM || type === '');
  const asJson = isJsonType(type) || (api === 'native' && type === '');
  if (asForm) {
    const pairs = parseForm(text);
    if (!pairs) return { ok: false, problem: 'malformed', message: 'The form body is malformed' };
    return { ok: true, body: { type: 'form', pairs } };
  }
  if (asJson) {
    if (text.trim() === '') return { ok: true, body: { type: 'json', value: {} } };
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
    return { ok: true, body: { type: 'json', value } };
  }
  const expected = api === 'cxml' ? `${FORM} or ${JSON_TYPE}` : JSON_TYPE;
  return {
    ok: false,
    problem: 'unsupported_media_type',
    message: `Content-Type must be ${expected}`,
  };
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

/** Form pairs as the validation rules take them: a repeated key becomes an array. */
export function formFields(pairs: FormPairs): Record<string, string | string[]> {
  // No prototype: a field named `__proto__` or `constructor` is just a field.
  const fields = Object.create(null) as Record<string, string | string[]>;
  for (const [key, value] of pairs) {
    const existing = fields[key];
    if (existing === undefined) fields[key] = value;
    else fields[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return fields;
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
 * or goes last when the caller gave none.
 */
export function withField(body: RequestBody, field: string, value: string): EncodedBody {
  if (body.type === 'form') {
    const pairs: FormPairs = [];
    let placed = false;
    for (const [key, v] of body.pairs) {
      if (key !== field) pairs.push([key, v]);
      else if (!placed) {
        pairs.push([key, value]);
        placed = true;
      }
    }
    if (!placed) pairs.push([field, value]);
    return { contentType: FORM, text: new URLSearchParams(pairs).toString() };
  }
  // Only objects get this far (see readRequestBody and the native rules). Spreading keeps an
  // existing key's position and defines own properties, `__proto__` included.
  const object = isPlainObject(body.value) ? body.value : {};
  return { contentType: JSON_TYPE, text: JSON.stringify({ ...object, [field]: value }) };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
