// Edge cases of src/http/retry-after.ts: each test kills mutants that survived
// test/unit/relay-decisions.test.ts (StrykerJS, 2026-12-07). Pure, no database.
import { answerRetryAfter, httpDate, retryAfter } from '../../src/http/retry-after';

const at = Date.parse('1994-11-06T08:49:37Z');

describe('retry-after (edge cases)', () => {
  test('When there is no header, then there is no delay (and nothing throws)', () => {
    expect(retryAfter(null, at)).toBeUndefined();
    expect(retryAfter(undefined, at)).toBeUndefined();
    expect(httpDate(null)).toBeUndefined();
    expect(httpDate(undefined)).toBeUndefined();
  });

  test("When the answer has a Date, then an HTTP-date Retry-After is read against it, not this process's clock", () => {
    expect(answerRetryAfter('Sun, 06 Nov 1994 08:49:47 GMT', 'Sun, 06 Nov 1994 08:49:37 GMT')).toBe(
      10_000,
    );
    // No Date (or garbage): this clock, and a delay in seconds is the same either way.
    expect(answerRetryAfter('5', null)).toBe(5_000);
    expect(answerRetryAfter('5', 'yesterday')).toBe(5_000);
    expect(answerRetryAfter('Sun, 06 Nov 1994 08:49:47 GMT', undefined)).toBe(0);
  });

  test('When an HTTP-date has surrounding whitespace, then it is still read', () => {
    expect(httpDate('  Sun, 06 Nov 1994 08:49:37 GMT  ')).toBe(at);
  });

  test('When an asctime date has a two-digit day, then it is read', () => {
    expect(httpDate('Wed Nov 16 08:49:37 1994')).toBe(Date.parse('1994-11-16T08:49:37Z'));
  });

  test('When an HTTP-date has junk before or after it, then it is not a date', () => {
    for (const date of [
      'Sun, 06 Nov 1994 08:49:37 GMT',
      'Sunday, 06-Nov-94 08:49:37 GMT',
      'Sun Nov  6 08:49:37 1994',
    ]) {
      expect(httpDate(date)).toBe(at);
      expect(httpDate(`1 ${date}`)).toBeUndefined();
      expect(httpDate(`junk ${date}`)).toBeUndefined();
      expect(httpDate(`${date} 1`)).toBeUndefined();
    }
  });
});
