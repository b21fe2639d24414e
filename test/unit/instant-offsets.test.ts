import { instant, parseInstant } from '../../src/http/query-params';

// The offsets a time bound may carry. ISO 8601 and PostgreSQL take the hour alone (`+01`,
// `-05`) as well as `+01:00` and `+0100`; test/api/query-instant-bounds.test.ts compares the
// parser with PostgreSQL over all of them.

const iso = (text: string) => parseInstant(text)?.toISOString() ?? null;

test('When a bound’s offset is the hour alone, then it means that hour with zero minutes', () => {
  expect(iso('2026-12-01T10:00:00+01')).toBe('2026-12-01T09:00:00.000Z');
  expect(iso('2026-12-01T10:00:00-05')).toBe('2026-12-01T15:00:00.000Z');
  expect(iso('2026-12-01 10:00+00')).toBe('2026-12-01T10:00:00.000Z');
  expect(iso('2026-12-01T10:00:00.25-05')).toBe(iso('2026-12-01T10:00:00.25-05:00'));
  expect(iso('2026-12-01T10:00:00+01')).toBe(iso('2026-12-01T10:00:00+0100'));
});

test('When an hour-only offset is typed unencoded in a query string, then its `+` is taken back', () => {
  // `+01` unencoded arrives as ` 01`.
  const since = instant('Since.').parse('2026-12-01T10:00:00 01');
  expect(since.toISOString()).toBe('2026-12-01T09:00:00.000Z');
});

test('When an offset is written any other way the parser refused before, then it is still refused', () => {
  for (const text of [
    '2026-12-01T10:00:00+1', // one digit
    '2026-12-01T10:00:00+001',
    '2026-12-01T10:00:00+01:', // a colon without minutes
    '2026-12-01T10:00:00+01:0',
    '2026-12-01T10:00:00+010',
    '2026-12-01T10:00:00+01:00:00',
    '2026-12-01T10:00:00+24', // no such hour
    '2026-12-01T10:00:00+0160',
    '2026-12-01T10:00:00 +01', // a space before the sign
    '2026-12-01T10:00:00++01',
    '2026-12-01+01', // a date has no offset
    '2026-12-01T10+01', // a time needs its minutes
  ]) {
    expect({ text, parsed: parseInstant(text) }).toEqual({ text, parsed: null });
  }
  expect(instant('Since.').safeParse('2026-12-01T10:00:00 1').success).toBe(false);
});
