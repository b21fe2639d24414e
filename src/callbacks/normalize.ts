import { badRequest } from '../errors';
import type { StatusEvent } from '../messages/status-event';
import { canonicalStatus } from '../messages/statuses';

/**
 * Pure mapping of both callback formats to one StatusEvent (DESIGN §3). Lenient by design:
 * SignalWire adds fields without notice, so unknown fields are kept in `raw` and only the id
 * and status are required.
 */

/** Parsed callback fields: a repeated form key becomes an array. */
export type CallbackFields = Record<string, unknown>;

export interface NormalizeOptions {
  receivedAt: Date;
  storeBody: boolean;
}

// Provider ids are UUIDs; Twilio-style SIDs are tolerated. Anything else is not an id.
const MESSAGE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const MAX_STATUS_LENGTH = 64;
// `to`, `from` and `error_code` are keys of the messages table's btree indexes, whose entries
// PostgreSQL caps at about 2.7 kB: a longer value would be refused by the write on every
// attempt (and, spooled during an outage, at replay). A real one is a phone number, a sender
// name or a code of a few characters; 256 leaves room for anything a provider could send.
const MAX_INDEXED_LENGTH = 256;

export function normalizeCxmlCallback(
  fields: CallbackFields,
  options: NormalizeOptions,
): StatusEvent {
  // Twilio-legacy SmsSid/SmsStatus may stand in for the Message* names.
  const messageId = word(fields.MessageSid) ?? word(fields.SmsSid);
  const rawStatus = word(fields.MessageStatus) ?? word(fields.SmsStatus);
  requireFields({ MessageSid: messageId, MessageStatus: rawStatus });
  return {
    messageId: checkId('MessageSid', messageId!),
    api: 'cxml',
    source: 'callback',
    projectId: text(fields.AccountSid),
    status: canonicalStatus(checkStatus('MessageStatus', rawStatus!)),
    rawStatus: rawStatus!,
    errorCode: indexed('ErrorCode', fields.ErrorCode),
    errorMessage: text(fields.ErrorMessage),
    from: indexed('From', fields.From),
    to: indexed('To', fields.To),
    numSegments: count(fields.NumSegments),
    numMedia: count(fields.NumMedia),
    providerTimestamp: null, // the compatibility format carries none
    receivedAt: options.receivedAt,
    raw: withoutBody(fields, options.storeBody, 'Body'),
  };
}

export function normalizeNativeCallback(
  fields: CallbackFields,
  options: NormalizeOptions,
): StatusEvent {
  const messageId = word(fields.id);
  const rawStatus = word(fields.status);
  requireFields({ id: messageId, status: rawStatus });
  return {
    messageId: checkId('id', messageId!),
    api: 'native',
    source: 'callback',
    projectId: text(fields.project_id),
    status: canonicalStatus(checkStatus('status', rawStatus!)),
    rawStatus: rawStatus!,
    errorCode: indexed('error_code', fields.error_code),
    errorMessage: text(fields.error_message),
    from: indexed('from', fields.from),
    to: indexed('to', fields.to),
    numSegments: count(fields.number_of_segments),
    numMedia: Array.isArray(fields.media) ? fields.media.length : count(fields.num_media),
    providerTimestamp: providerTimestamp(fields.timestamp),
    receivedAt: options.receivedAt,
    raw: withoutBody(fields, options.storeBody, 'body'),
  };
}

function requireFields(required: Record<string, string | null>): void {
  const missing = Object.keys(required).filter((name) => required[name] === null);
  if (missing.length > 0) {
    throw badRequest(
      'missing_field',
      `Required field${missing.length > 1 ? 's' : ''} missing or not a single string: ${missing.join(', ')}`,
      missing.map((path) => ({ path, message: 'Required string' })),
    );
  }
}

function checkId(name: string, value: string): string {
  if (!MESSAGE_ID.test(value)) {
    throw badRequest('invalid_field', `${name} is not a message id`, [
      { path: name, message: 'Expected a message id (UUID)' },
    ]);
  }
  return value;
}

function checkStatus(name: string, value: string): string {
  if (value.length > MAX_STATUS_LENGTH) {
    throw badRequest('invalid_field', `${name} is too long`, [{ path: name, message: 'Too long' }]);
  }
  return value;
}

/** text() of a field that is an index key: too long a value is malformed (MAX_INDEXED_LENGTH). */
function indexed(name: string, value: unknown): string | null {
  const s = text(value);
  if (s !== null && s.length > MAX_INDEXED_LENGTH) {
    throw badRequest('invalid_field', `${name} is too long`, [
      { path: name, message: `At most ${MAX_INDEXED_LENGTH} characters` },
    ]);
  }
  return s;
}

/** A scalar as trimmed text; numbers become text (error codes are text, never numbers). */
function text(value: unknown): string | null {
  if (Array.isArray(value)) return text(value[0]);
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value !== 'string') return null;
  const trimmed = value.trim();
  return trimmed === '' ? null : trimmed;
}

/** Ids and statuses must be one string: a number, object or repeated field is not one. */
function word(value: unknown): string | null {
  return typeof value === 'string' ? text(value) : null;
}

function count(value: unknown): number | null {
  const s = text(value);
  if (s === null || !/^\d{1,6}$/.test(s)) return null;
  return Number(s);
}

/**
 * A provider timestamp, or null when there is none to trust. JavaScript dates reach years
 * PostgreSQL cannot store (`-004713-11-23T…` parses, and would fail the whole write with a
 * 503 retried forever): only years 1–9999 count, like an unparsable value.
 */
export function providerTimestamp(value: unknown): Date | null {
  const s = text(value);
  if (s === null) return null;
  const date = new Date(s);
  const year = date.getUTCFullYear();
  return Number.isNaN(year) || year < 1 || year > 9999 ? null : date;
}

function withoutBody(
  fields: CallbackFields,
  storeBody: boolean,
  bodyField: string,
): CallbackFields {
  if (storeBody || !(bodyField in fields)) return fields;
  // A loop rather than `{ [bodyField]: _, ...rest }`: V8 runs a rest pattern with a computed
  // key in its runtime, not in optimised code (about 2 % of the server's CPU per callback).
  // No prototype, so a field named `__proto__` stays a field, as it was in `fields`.
  const rest = Object.create(null) as CallbackFields;
  for (const key of Object.keys(fields)) {
    if (key !== bodyField) rest[key] = fields[key];
  }
  return rest;
}
