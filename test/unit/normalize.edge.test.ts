// Edge cases of src/callbacks/normalize.ts: each test kills mutants that survived
// test/unit/normalize*.test.ts (StrykerJS, 2026-12-07). Pure, no database.
import {
  isoTimestamp,
  normalizeCxmlCallback,
  normalizeNativeCallback,
  rfc2822Timestamp,
} from '../../src/callbacks/normalize';
import { AppError } from '../../src/errors';

const options = { receivedAt: new Date('2026-11-01T10:00:00Z'), storeBody: false };
const cxml = (fields: Record<string, unknown>) =>
  normalizeCxmlCallback({ MessageSid: 'SM1', MessageStatus: 'sent', ...fields }, options);
const native = (fields: Record<string, unknown>) =>
  normalizeNativeCallback({ id: 'abc', status: 'sent', ...fields }, options);
function thrown(fn: () => unknown): AppError {
  try {
    fn();
  } catch (error) {
    if (error instanceof AppError) return error;
    throw error;
  }
  throw new Error('did not throw');
}
const iso = (s: string) => isoTimestamp(s)?.toISOString() ?? null;
const rfc = (s: string) => rfc2822Timestamp(s)?.toISOString() ?? null;

describe('normalize (edge cases)', () => {
  test('When a callback is normalized, then it is marked as a callback of its API', () => {
    expect(cxml({})).toMatchObject({ api: 'cxml', source: 'callback' });
    expect(native({})).toMatchObject({ api: 'native', source: 'callback' });
  });

  test('When required fields are missing, then the 400 names each of them', () => {
    const both = thrown(() => normalizeCxmlCallback({}, options));
    expect(both).toMatchObject({ status: 400, code: 'missing_field' });
    expect(both.message).toBe(
      'Required fields missing or not a single string: MessageSid, MessageStatus',
    );
    expect(both.details).toEqual([
      { path: 'MessageSid', message: 'Required string' },
      { path: 'MessageStatus', message: 'Required string' },
    ]);
    const one = thrown(() => normalizeNativeCallback({ id: 'abc' }, options));
    expect(one.message).toBe('Required field missing or not a single string: status');
    expect(one.details).toEqual([{ path: 'status', message: 'Required string' }]);
  });

  test('When the id is not a message id, then the 400 names the field', () => {
    for (const [fn, name] of [
      [() => cxml({ MessageSid: 'a b' }), 'MessageSid'],
      [() => native({ id: 'a b' }), 'id'],
    ] as const) {
      const error = thrown(fn);
      expect(error).toMatchObject({
        status: 400,
        code: 'invalid_field',
        message: `${name} is not a message id`,
      });
      expect(error.details).toEqual([{ path: name, message: 'Expected a message id (UUID)' }]);
    }
  });

  test('When a status is longer than 64 characters, then it is refused naming the field; 64 is fine', () => {
    expect(cxml({ MessageStatus: 'x'.repeat(64) }).rawStatus).toHaveLength(64);
    for (const [fn, name] of [
      [() => cxml({ MessageStatus: 'x'.repeat(65) }), 'MessageStatus'],
      [() => native({ status: 'x'.repeat(65) }), 'status'],
    ] as const) {
      const error = thrown(fn);
      expect(error).toMatchObject({
        status: 400,
        code: 'invalid_field',
        message: `${name} is too long`,
      });
      expect(error.details).toEqual([{ path: name, message: 'Too long' }]);
    }
  });

  test('When an indexed field is longer than 256 characters, then it is refused naming the field; 256 is fine', () => {
    const cases: Array<[(f: Record<string, unknown>) => unknown, string]> = [
      [cxml, 'AccountSid'],
      [cxml, 'ErrorCode'],
      [cxml, 'From'],
      [cxml, 'To'],
      [native, 'project_id'],
      [native, 'error_code'],
      [native, 'from'],
      [native, 'to'],
    ];
    for (const [fn, name] of cases) {
      expect(() => fn({ [name]: 'a'.repeat(256) })).not.toThrow();
      const error = thrown(() => fn({ [name]: 'a'.repeat(257) }));
      expect(error).toMatchObject({
        status: 400,
        code: 'invalid_field',
        message: `${name} is too long`,
      });
      expect(error.details).toEqual([{ path: name, message: 'At most 256 characters' }]);
    }
  });

  test('When a form field is repeated, then its first value is taken', () => {
    const event = cxml({ From: ['+15550000001', '+15550000009'], ErrorCode: ['30003', '30005'] });
    expect(event.from).toBe('+15550000001');
    expect(event.errorCode).toBe('30003');
  });

  test('When a native field is null, a boolean or an object, then it is absent, not its text', () => {
    const event = native({
      error_code: null,
      error_message: false,
      from: true,
      to: {},
      project_id: null,
    });
    expect(event).toMatchObject({
      errorCode: null,
      errorMessage: null,
      from: null,
      to: null,
      projectId: null,
    });
    expect(native({ error_code: 30003 }).errorCode).toBe('30003');
  });

  test('When counts are given, then multi-digit ones are read and absent or junk ones are null', () => {
    expect(cxml({ NumSegments: '12', NumMedia: '10' })).toMatchObject({
      numSegments: 12,
      numMedia: 10,
    });
    expect(cxml({})).toMatchObject({ numSegments: null, numMedia: null });
    expect(cxml({ NumSegments: 'abc', NumMedia: '1234567' })).toMatchObject({
      numSegments: null,
      numMedia: null,
    });
    expect(native({ number_of_segments: 3 }).numSegments).toBe(3);
  });

  test('When an ISO timestamp has a short fraction, then it is tenths/hundredths of a second', () => {
    expect(iso('2026-03-17T22:26:57.5Z')).toBe('2026-03-17T22:26:57.500Z');
    expect(iso('2026-03-17T22:26:57.25Z')).toBe('2026-03-17T22:26:57.250Z');
  });

  test('When an ISO date-time does not exist, then it is null', () => {
    expect(iso('2026-02-30T10:00:00Z')).toBeNull();
    expect(iso('2026-13-01T10:00:00Z')).toBeNull();
    expect(iso('2026-02-28T24:00:00Z')).toBeNull();
    expect(iso('2026-02-28T23:60:00Z')).toBeNull();
    expect(iso('2026-12-31T23:59:60Z')).toBeNull();
  });

  test('When an offset is out of range, then it is null; +23:59 is in range', () => {
    expect(iso('2026-03-17T22:26:57+23:59')).toBe('2026-03-16T22:27:57.000Z');
    expect(iso('2026-03-17T22:26:57+23:00')).toBe('2026-03-16T23:26:57.000Z');
    expect(iso('2026-03-17T22:26:57+24:00')).toBeNull();
    expect(iso('2026-03-17T22:26:57+05:60')).toBeNull();
  });

  test('When an offset moves the instant out of years 1-9999, then it is null; the edges themselves are fine', () => {
    expect(iso('9999-12-31T23:30:00-01:00')).toBeNull();
    expect(iso('0001-01-01T00:30:00+01:00')).toBeNull();
    expect(iso('0001-01-01T12:00:00Z')).toBe('0001-01-01T12:00:00.000Z');
    expect(iso('9999-12-31T12:00:00Z')).toBe('9999-12-31T12:00:00.000Z');
  });

  test('When a compatibility date names any month, then it is that month', () => {
    const months = [
      'Jan',
      'Feb',
      'Mar',
      'Apr',
      'May',
      'Jun',
      'Jul',
      'Aug',
      'Sep',
      'Oct',
      'Nov',
      'Dec',
    ];
    months.forEach((name, index) => {
      expect(rfc(`01 ${name} 2026 00:00:00 +0000`)).toBe(
        new Date(Date.UTC(2026, index, 1)).toISOString(),
      );
    });
  });

  test('When a compatibility date has an obsolete zone name, then it is read at that zone', () => {
    const zones: Record<string, number> = {
      UT: 0,
      UTC: 0,
      GMT: 0,
      EST: -5,
      EDT: -4,
      CST: -6,
      CDT: -5,
      MST: -7,
      MDT: -6,
      PST: -8,
      PDT: -7,
    };
    for (const [zone, hours] of Object.entries(zones)) {
      expect(rfc(`13 Aug 2018 12:00:00 ${zone}`)).toBe(
        new Date(Date.UTC(2018, 7, 13, 12 - hours)).toISOString(),
      );
    }
  });

  test('When a compatibility date is spelled with or without its optional parts, then it is read; with junk around it, it is not', () => {
    const at = '2018-08-13T21:38:46.000Z';
    expect(rfc('Mon, 13 Aug 2018 21:38:46 +0000')).toBe(at);
    expect(rfc('Mon,13 Aug 2018 21:38:46 +0000')).toBe(at);
    expect(rfc('Mon,  13 Aug 2018 21:38:46 +0000')).toBe(at);
    expect(rfc('13  Aug  2018  21:38:46  +0000')).toBe(at);
    expect(rfc('13 Aug 2018 21:38 GMT')).toBe('2018-08-13T21:38:00.000Z');
    expect(rfc('3 Aug 2018 21:38:46 +0000')).toBe('2018-08-03T21:38:46.000Z');
    expect(rfc('x13 Aug 2018 21:38:46 +0000')).toBeNull();
    expect(rfc('13 Aug 2018 21:38:46 +0000x')).toBeNull();
    expect(rfc('Mon, 13 Aug 2018 21:38:46')).toBeNull();
    expect(rfc('13 Aug 2018 21:38:46 -0130')).toBe('2018-08-13T23:08:46.000Z');
  });
});
