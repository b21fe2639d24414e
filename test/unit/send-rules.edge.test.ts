// Edge cases of src/signalwire/send-rules.ts (partial: givenValue and
// parseBooleanish only): each test kills mutants that survived test/unit/send-rules.test.ts
// (StrykerJS, 2026-12-07). Pure, no database.
import { givenValue, parseBooleanish } from '../../src/signalwire/send-rules';

describe('send rules (edge cases)', () => {
  test("When a repeated parameter starts with an empty value, then the app's own value is read, not the empty one", () => {
    // A hidden field's "" ahead of the app's StatusCallback must not hide it.
    expect(givenValue(['', 'https://app.example.com/cb'])).toBe('https://app.example.com/cb');
    expect(givenValue([null, 'https://app.example.com/cb'])).toBe('https://app.example.com/cb');
    expect(givenValue(['a', 'b'])).toBe('a');
    // All empty: the first.
    expect(givenValue(['', null])).toBe('');
    expect(givenValue([null, ''])).toBeNull();
    expect(givenValue([])).toBeUndefined();
  });

  test('When a boolean-ish value is given, then the spellings form clients send are read and others are not', () => {
    expect(parseBooleanish(true)).toBe(true);
    expect(parseBooleanish(false)).toBe(false);
    expect(parseBooleanish(' TRUE ')).toBe(true);
    expect(parseBooleanish('1')).toBe(true);
    expect(parseBooleanish(' False')).toBe(false);
    expect(parseBooleanish('0')).toBe(false);
    expect(parseBooleanish('yes')).toBeUndefined();
    expect(parseBooleanish('')).toBeUndefined();
    expect(parseBooleanish(1)).toBeUndefined();
    expect(parseBooleanish(null)).toBeUndefined();
  });
});
