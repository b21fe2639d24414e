import { badRequest } from '../errors';
import { MAX_INDEXED_LENGTH } from '../messages/status-event';
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
    projectId: projectOf('AccountSid', fields.AccountSid),
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
    projectId: projectOf('project_id', fields.project_id),
    status: canonicalStatus(checkStatus('status', rawStatus!)),
    rawStatus: rawStatus!,
    errorCode: indexed('error_code', fields.error_code),
    errorMessage: text(fields.error_message),
    from: indexed('from', fields.from),
    to: indexed('to', fields.to),
    numSegments: count(fields.number_of_segments),
    numMedia: Array.isArray(fields.media) ? fields.media.length : count(fields.num_media),
    providerTimestamp: isoTimestamp(fields.timestamp),
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

/**
 * A project id in lower case: project ids are UUIDs, which compare without case, and the
 * configuration and the proxy's sends keep them in lower case (config.ts), as SignalWire writes
 * them: one spelled otherwise is the same project, not another (record-events refusedProjects).
 */
function projectOf(name: string, value: unknown): string | null {
  return indexed(name, value)?.toLowerCase() ?? null;
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

// ISO 8601 extended format, as native payloads write it (`2026-03-17T22:26:57Z`): a date-time,
// seconds and fraction optional, a `T` (or the space RFC 3339 allows), an optional offset.
const ISO_DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

// RFC 2822 §3.3, as the compatibility API writes its dates (`Mon, 13 Aug 2018 21:38:46 +0000`,
// seed 004): the zone is part of the format, and the obsolete names of §4.3 are still read.
const RFC_2822_DATE_TIME =
  /^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s*)?(\d{1,2})\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(\d{4})\s+(\d{2}):(\d{2})(?::(\d{2}))?\s+([+-]\d{4}|UT|UTC|GMT|[ECMP][SD]T)$/i;
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const ZONE_MINUTES: Readonly<Record<string, number>> = {
  ut: 0,
  utc: 0,
  gmt: 0,
  est: -300,
  edt: -240,
  cst: -360,
  cdt: -300,
  mst: -420,
  mdt: -360,
  pst: -480,
  pdt: -420,
};

/**
 * A native timestamp: ISO 8601, and UTC when it has no offset (SignalWire writes UTC; the
 * service reads offset-less date-times as UTC everywhere, DESIGN §6). Not `new Date(text)`:
 * that reads an offset-less date-time in the server's own time zone — so two replicas, or a
 * replica and the replay of its spool elsewhere, would disagree about the same callback's
 * dedupe key and conflict outcome — and it takes junk (`"0"` is the year 2000). Null when the
 * text is not such a date-time, names a day or time that does not exist, or a year PostgreSQL
 * cannot store (years 0001–9999 only: a write that fails on it would be retried forever).
 */
export function isoTimestamp(value: unknown): Date | null {
  const s = text(value);
  const match = s === null ? null : ISO_DATE_TIME.exec(s);
  if (!match) return null;
  const [, year, month, day, hour, minute, second = '0', fraction = '', offset = 'Z'] = match;
  const ms = fraction.slice(0, 3).padEnd(3, '0');
  return utcDate([year, month, day, hour, minute, second, ms].map(Number), offsetMinutes(offset));
}

/** A compatibility date (RFC 2822, zone required), or null. */
export function rfc2822Timestamp(value: unknown): Date | null {
  const s = text(value);
  const match = s === null ? null : RFC_2822_DATE_TIME.exec(s);
  if (!match) return null;
  const [, day, monthName, year, hour, minute, second = '0', zone] = match;
  const month = MONTHS.indexOf(monthName!.toLowerCase()) + 1;
  const lower = zone!.toLowerCase();
  const offset = Object.hasOwn(ZONE_MINUTES, lower) ? ZONE_MINUTES[lower]! : offsetMinutes(zone!);
  return utcDate(
    [Number(year), month, Number(day), Number(hour), Number(minute), Number(second), 0],
    offset,
  );
}

/**
 * A provider timestamp in either API's format: ISO 8601 (native) or RFC 2822 (compatibility:
 * the create answer's `date_created`, src/proxy/send-event.ts). Null when it is neither.
 */
export function providerTimestamp(value: unknown): Date | null {
  return isoTimestamp(value) ?? rfc2822Timestamp(value);
}

/** `Z`, `±hh`, `±hhmm` or `±hh:mm` in minutes east of UTC; null when out of range. */
function offsetMinutes(offset: string): number | null {
  if (offset.toUpperCase() === 'Z') return 0;
  const [, sign, hours, minutes = '00'] = /^([+-])(\d{2}):?(\d{2})?$/.exec(offset)!;
  if (Number(hours) > 23 || Number(minutes) > 59) return null;
  return (sign === '-' ? -1 : 1) * (Number(hours) * 60 + Number(minutes));
}

/**
 * The instant of a wall-clock time (year, month 1–12, day, hour, minute, second, ms) at
 * `offset` minutes east of UTC; null when that time does not exist.
 */
function utcDate(fields: readonly number[], offset: number | null): Date | null {
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, ms = 0] = fields;
  if (offset === null || year < 1) return null;
  // Set field by field (Date.UTC would read years 1–99 as 1901–1999) and read back: Date rolls
  // 2026-02-30 over to March, so a day or time that does not exist — a leap second too,
  // which a Date cannot hold — comes back different and is refused.
  const wall = new Date(0);
  wall.setUTCFullYear(year, month - 1, day);
  wall.setUTCHours(hour, minute, second, ms);
  if (
    wall.getUTCFullYear() !== year ||
    wall.getUTCMonth() !== month - 1 ||
    wall.getUTCDate() !== day ||
    wall.getUTCHours() !== hour ||
    wall.getUTCMinutes() !== minute ||
    wall.getUTCSeconds() !== second
  ) {
    return null;
  }
  const instant = new Date(wall.getTime() - offset * 60_000);
  // Only years PostgreSQL stores: an offset can push 9999-12-31T23:30-01:00 past them.
  const instantYear = instant.getUTCFullYear();
  return instantYear < 1 || instantYear > 9999 ? null : instant;
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
