import type { Request } from 'express';
import { AppError, badRequest } from '../errors';
import {
  MAX_FORM_PARAMETERS,
  MAX_JSON_DEPTH,
  formFields,
  formParametersExceed,
  jsonNestingExceeds,
} from '../http/body-limits';
import { holdsNul, withoutNul } from '../messages/map-strings';
import type { Api } from '../messages/statuses';
import type { CallbackFields } from './normalize';

// A callback's body as fields (callbacks.routes.ts reads and admits it first): parsed within
// the limits of src/http/body-limits.ts, and made storable.

/** `form` for an urlencoded body or a GET's query, `json` for a JSON body. */
export type BodyKind = 'form' | 'json';

export interface ParsedCallback {
  fields: CallbackFields;
  formParams: Array<[string, string]>;
}

/** The body (or a GET's query) as fields, within the limits of src/http/body-limits.ts. */
export function parseCallback(body: BodyKind, req: Request): ParsedCallback {
  if (req.method === 'GET') {
    const query = req.originalUrl.includes('?')
      ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1)
      : '';
    // Signed GET callbacks cover the full URL and no body parameters.
    return { fields: formFields(parseForm(query)), formParams: [] };
  }
  const text = (Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)).toString('utf8');
  if (body === 'json') return { fields: parseJsonObject(text), formParams: [] };
  const pairs = parseForm(text);
  return { fields: formFields(pairs), formParams: pairs };
}

function parseForm(text: string): Array<[string, string]> {
  if (formParametersExceed(text, MAX_FORM_PARAMETERS)) {
    throw new AppError(
      413,
      'too_many_parameters',
      `The form has more than ${MAX_FORM_PARAMETERS} parameters`,
    );
  }
  return [...new URLSearchParams(text)];
}

function parseJsonObject(text: string): CallbackFields {
  if (jsonNestingExceeds(text, MAX_JSON_DEPTH)) {
    throw badRequest('nesting_too_deep', `The JSON nests deeper than ${MAX_JSON_DEPTH} levels`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw badRequest('malformed_body', 'The body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest('malformed_body', 'The body must be a JSON object');
  }
  return value as CallbackFields;
}

/** The fields that say which message and what happened (normalize.ts reads them so). */
const IDENTITY_FIELDS: Record<Api, readonly string[]> = {
  cxml: ['MessageSid', 'SmsSid', 'MessageStatus', 'SmsStatus', 'ErrorCode'],
  // The timestamp too: it is part of the dedupe key and orders conflicting events.
  native: ['id', 'status', 'error_code', 'timestamp'],
};

/**
 * The fields as they can be stored. PostgreSQL text and jsonb cannot hold NUL. In what says
 * which message and what happened (or in a name), it is refused: stripped, it could make
 * another id or status. Anywhere else (a message text or custom variable the app sent with
 * one) it is left out of what is stored; refused, SignalWire's callbacks for such a send would
 * all be lost. The relay keeps the callback's bytes as received. One scan for the usual
 * callback, which has none.
 */
export function storableFields(api: Api, fields: CallbackFields): CallbackFields {
  if (!holdsNul(fields)) return fields;
  if (nulInKeyOrIdentity(api, fields)) {
    throw badRequest(
      'invalid_character',
      'NUL characters are not accepted in field names, ids, statuses, error codes or timestamps',
    );
  }
  return withoutNul(fields) as CallbackFields;
}

/** Whether a NUL is in any key, however deeply nested, or in an identity field's value. */
function nulInKeyOrIdentity(api: Api, fields: CallbackFields): boolean {
  return holdsNul(fields, true) || IDENTITY_FIELDS[api].some((name) => holdsNul(fields[name]));
}
