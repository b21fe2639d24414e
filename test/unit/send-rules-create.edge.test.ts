// Edge cases of src/signalwire/send-rules.ts (relayUrl, messageKind, scalar/mediaList of the
// compatibility create, and parseNativeCreate): each test kills mutants that survived
// test/unit/send-rules*.test.ts (StrykerJS, 2026-12-07). Pure, no database.
import {
  messageKind,
  parseCompatCreate,
  parseNativeCreate,
  relayUrl,
} from '../../src/signalwire/send-rules';

const TO = '+15557654321';
const FROM = '+15551234567';

function nativeCodes(json: unknown): Array<[string, string | null]> {
  const result = parseNativeCreate(json);
  return result.ok ? [] : result.error.errors.map((e) => [e.code, e.attribute]);
}

describe('send rules (edge cases)', () => {
  test('When a callback URL has a fragment, then it is called without it; otherwise exactly as given', () => {
    expect(relayUrl('https://app.example.com/cb?x=1#frag')).toBe('https://app.example.com/cb?x=1');
    expect(relayUrl('https://app.example.com/cb#')).toBe('https://app.example.com/cb');
    expect(relayUrl('https://app.example.com/cb?x=1')).toBe('https://app.example.com/cb?x=1');
    expect(relayUrl('https://app.example.com/c')).toBe('https://app.example.com/c');
  });

  test('When there is media or MMS is forced, then the message is mms; otherwise sms', () => {
    expect(messageKind([], false)).toBe('sms');
    expect(messageKind([], true)).toBe('mms');
    expect(messageKind(['https://e.com/a.png'], false)).toBe('mms');
    expect(messageKind(['https://e.com/a.png'], true)).toBe('mms');
  });

  test('When a compatibility JSON field is null, then it counts as absent (as in the native API)', () => {
    const result = parseCompatCreate({
      To: TO,
      From: FROM,
      Body: 'x',
      StatusCallback: null,
      MaxPrice: null,
      ValidityPeriod: null,
      SendAsMms: null,
      ApplicationSid: null,
      MessagingServiceSid: null,
      MediaUrl: null,
    });
    expect(result.ok && result.value).toMatchObject({
      statusCallback: null,
      maxPrice: null,
      validityPeriod: 14400,
      sendAsMms: false,
      applicationSid: null,
      messagingServiceSid: null,
      mediaUrls: [],
    });
  });

  test('When a form sends an empty MediaUrl (an unset field), then it is no media, not a bad URL', () => {
    const empty = parseCompatCreate({ To: TO, From: FROM, Body: 'x', MediaUrl: '' });
    expect(empty.ok && empty.value.mediaUrls).toEqual([]);
    const mixed = parseCompatCreate({
      To: TO,
      From: FROM,
      MediaUrl: ['', 'https://e.com/a.png', ''],
    });
    expect(mixed.ok && mixed.value.mediaUrls).toEqual(['https://e.com/a.png']);
  });

  test('When compatibility JSON numbers are given, then they are recorded as their text', () => {
    const result = parseCompatCreate({
      To: TO,
      From: FROM,
      Body: 'x',
      MaxPrice: 1,
      ValidityPeriod: 60,
    });
    expect(result.ok && result.value.maxPrice).toBe('1');
    expect(result.ok && result.value.validityPeriod).toBe(60);
  });

  test('When a compatibility Body is a JSON object, then the answer is 10000, not the object as text', () => {
    const result = parseCompatCreate({ To: TO, From: FROM, Body: { text: 'hi' } });
    expect(!result.ok && result.error.code).toBe(10000);
  });

  test('When a media item is a nested list, then it is a bad media URL (compat 21620, native media error)', () => {
    const compat = parseCompatCreate({ To: TO, From: FROM, MediaUrl: [['https://e.com/a.png']] });
    expect(!compat.ok && compat.error.code).toBe(21620);
    expect(nativeCodes({ to: TO, from: FROM, media: [['https://e.com/a.png']] })).toEqual([
      ['invalid_parameter', 'media'],
    ]);
  });

  test('When native to or from is an empty string, then it is missing, not malformed', () => {
    expect(nativeCodes({ to: '', from: '', body: 'x' })).toEqual([
      ['missing_required_parameter', 'to'],
      ['missing_required_parameter', 'from'],
    ]);
    expect(nativeCodes({ to: TO, body: 'x' })).toEqual([['missing_required_parameter', 'from']]);
  });

  test('When a compatibility To is an empty JSON list, then it is missing (21604), not malformed', () => {
    const result = parseCompatCreate({ To: [], From: FROM, Body: 'x' });
    expect(!result.ok && result.error.code).toBe(21604);
  });

  test('When native to or from is not a valid string, then it is invalid', () => {
    expect(nativeCodes({ to: 'abc', from: FROM, body: 'x' })).toEqual([
      ['invalid_parameter', 'to'],
    ]);
    expect(nativeCodes({ to: 988, from: FROM, body: 'x' })).toEqual([['invalid_parameter', 'to']]);
    expect(nativeCodes({ to: TO, from: 12345, body: 'x' })).toEqual([
      ['invalid_parameter', 'from'],
    ]);
  });

  test('When native body is not a string, then only that is reported (not also body_or_media_required)', () => {
    expect(nativeCodes({ to: TO, from: FROM, body: 5 })).toEqual([['invalid_parameter', 'body']]);
  });

  test('When native media is not an array, then it is invalid even with a body', () => {
    expect(nativeCodes({ to: TO, from: FROM, body: 'x', media: 'https://e.com/a.png' })).toEqual([
      ['invalid_parameter', 'media'],
    ]);
  });

  test('When native media has 8 items it is accepted; with 9, a bad ninth is reported too', () => {
    const media = Array.from({ length: 9 }, (_, i) => `https://e.com/${i}.png`);
    const eight = parseNativeCreate({ to: TO, from: FROM, media: media.slice(0, 8) });
    expect(eight.ok && eight.value.media).toEqual(media.slice(0, 8));
    expect(
      nativeCodes({ to: TO, from: FROM, media: [...media.slice(0, 8), 'ftp://e.com/x'] }),
    ).toEqual([
      ['invalid_parameter', 'media'],
      ['invalid_parameter', 'media'],
    ]);
  });

  test('When native custom_variables is a number, boolean or list, then it is invalid', () => {
    for (const custom_variables of [5, true, []]) {
      expect(nativeCodes({ to: TO, from: FROM, body: 'x', custom_variables })).toEqual([
        ['invalid_parameter', 'custom_variables'],
      ]);
    }
  });
});
