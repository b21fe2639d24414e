import fc from 'fast-check';
import { normalizeCxmlCallback, normalizeNativeCallback } from '../../src/callbacks/normalize';
import type { CallbackFields } from '../../src/callbacks/normalize';
import { AppError } from '../../src/errors';
import { formFields } from '../../src/http/body-limits';
import { dedupeKey } from '../../src/messages/status-event';
import type { StatusEvent } from '../../src/messages/status-event';
import { CANONICAL_STATUSES } from '../../src/messages/statuses';

/**
 * Whatever a callback's fields hold — any JSON value where a string is expected, numbers as
 * text, odd dates, repeated form keys — normalization either refuses it as bad input (a 400)
 * or makes an event PostgreSQL stores on the first attempt (a failure would be retried in
 * vain); and one callback makes one dedupe key however its values are spelled.
 */

const options = { receivedAt: new Date('2026-03-17T22:27:00Z'), storeBody: false };

const timestamp = fc.oneof(
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.stringMatching(
    /^[0-9]{4}-[0-9]{2}-[0-9]{2}[T t][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,12})?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?$/,
  ),
  fc.string(),
);
const value = fc.oneof(
  fc.jsonValue(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom('', ' ', '30003', '-1', '1.5', '1e3', '007', ' 2 ', '999999', '1000000'),
  fc.integer(),
  fc.double(),
  timestamp,
);
const status = fc.oneof(
  fc.constantFrom('delivered', ' Delivered ', 'INITIATED', 'read', '__proto__', 'toString'),
  value,
);
const id = fc.oneof(fc.uuid(), fc.string({ maxLength: 70 }), value);

function expectStorable(event: StatusEvent): void {
  expect(event.messageId).toMatch(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/);
  expect(CANONICAL_STATUSES).toContain(event.status);
  expect(event.rawStatus.length).toBeGreaterThan(0);
  expect(event.rawStatus.length).toBeLessThanOrEqual(64);
  for (const indexed of [event.to, event.from, event.errorCode, event.projectId]) {
    if (indexed !== null) expect(indexed.length).toBeLessThanOrEqual(256);
  }
  for (const count of [event.numSegments, event.numMedia]) {
    if (count !== null) expect(Number.isSafeInteger(count) && count >= 0).toBe(true);
  }
  if (event.providerTimestamp !== null) {
    const year = event.providerTimestamp.getUTCFullYear();
    expect(year >= 1 && year <= 9999).toBe(true);
  }
  expect(() => dedupeKey(event)).not.toThrow();
}

function normalizedOrRefused(normalize: () => StatusEvent): StatusEvent | null {
  try {
    return normalize();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).status).toBe(400);
    return null;
  }
}

test('When a native callback holds any values, then it is refused as bad input or normalized to a storable event', () => {
  fc.assert(
    fc.property(
      fc.record(
        {
          id,
          status,
          error_code: value,
          to: value,
          from: value,
          number_of_segments: value,
          media: value,
          timestamp: value,
          project_id: value,
        },
        { requiredKeys: [] },
      ),
      (fields) => {
        const event = normalizedOrRefused(() =>
          normalizeNativeCallback(fields as CallbackFields, options),
        );
        if (event) expectStorable(event);
      },
    ),
    { numRuns: 2_000 },
  );
});

test('When a cXML form holds any parameters, repeated ones included, then it is refused as bad input or normalized to a storable event', () => {
  const name = fc.constantFrom(
    'MessageSid',
    'SmsSid',
    'MessageStatus',
    'SmsStatus',
    'ErrorCode',
    'To',
    'From',
    'NumSegments',
    'NumMedia',
    'Body',
    '__proto__',
  );
  fc.assert(
    fc.property(
      fc.array(fc.tuple(name, fc.oneof(fc.string({ unit: 'binary' }), fc.uuid())), {
        maxLength: 12,
      }),
      (pairs) => {
        const event = normalizedOrRefused(() => normalizeCxmlCallback(formFields(pairs), options));
        if (event) expectStorable(event);
      },
    ),
    { numRuns: 2_000 },
  );
});

test('When the same native callback spells its error code as a number or text, and its timestamp with another offset or precision, then it has one dedupe key', () => {
  fc.assert(
    fc.property(
      fc.uuid(),
      fc.integer({ min: 1, max: 99_999 }),
      fc.date({
        min: new Date('0002-01-01T00:00:00Z'),
        max: new Date('9998-12-31T00:00:00Z'),
        noInvalidDate: true,
      }),
      fc.integer({ min: -14 * 60, max: 14 * 60 }),
      (messageId, code, instant, offsetMinutes) => {
        const seconds = new Date(Math.floor(instant.getTime() / 1000) * 1000);
        const asZulu = seconds.toISOString().replace('.000Z', 'Z');
        const local = new Date(seconds.getTime() + offsetMinutes * 60_000).toISOString();
        const sign = offsetMinutes < 0 ? '-' : '+';
        const hh = String(Math.floor(Math.abs(offsetMinutes) / 60)).padStart(2, '0');
        const mm = String(Math.abs(offsetMinutes) % 60).padStart(2, '0');
        const withOffset = `${local.slice(0, 19)}.000000${sign}${hh}:${mm}`;

        const a = normalizeNativeCallback(
          { id: messageId, status: 'failed', error_code: code, timestamp: asZulu },
          options,
        );
        const b = normalizeNativeCallback(
          { id: messageId, status: ' FAILED ', error_code: ` ${code}`, timestamp: withOffset },
          options,
        );
        expect(b.providerTimestamp?.getTime()).toBe(a.providerTimestamp?.getTime());
        expect(dedupeKey(b).equals(dedupeKey(a))).toBe(true);
      },
    ),
    { numRuns: 1_000 },
  );
});
