import { createAcceptedCredentials } from '../../src/proxy/accepted-credentials';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';

/**
 * The record behind an unanswered deletion's erasure (pass-through.routes.ts forgetRedactedText):
 * credentials count as accepted only after a 2xx, for an hour, until a 401, and the
 * record stays bounded.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const GENUINE = basicAuthHeader(PROJECT, 'PTgenuine');
const OTHER = basicAuthHeader(PROJECT, 'PTother');

test('When SignalWire answers 2xx, then those exact credentials are accepted and no others', () => {
  const accepted = createAcceptedCredentials();
  expect(accepted.has(GENUINE)).toBe(false);
  accepted.answered(GENUINE, 201);
  expect(accepted.has(GENUINE)).toBe(true);
  expect(accepted.has(OTHER)).toBe(false);
  expect(accepted.has(undefined)).toBe(false);
});

test('When SignalWire answers only 404, 400, 429 or 5xx, then the credentials are not accepted', () => {
  const accepted = createAcceptedCredentials();
  for (const status of [302, 400, 404, 429, 500, 503]) accepted.answered(GENUINE, status);
  expect(accepted.has(GENUINE)).toBe(false);
});

test('When SignalWire answers 401 to accepted credentials, then they are no longer accepted; a 403 (a token it knows, refused one resource) leaves them', () => {
  const accepted = createAcceptedCredentials();
  accepted.answered(GENUINE, 200);
  accepted.answered(GENUINE, 500);
  accepted.answered(GENUINE, 403);
  expect(accepted.has(GENUINE)).toBe(true);
  accepted.answered(GENUINE, 401);
  expect(accepted.has(GENUINE)).toBe(false);
});

test('When the same credentials are written another way SignalWire reads alike, then they are one entry, and a header that is not Basic credentials is never accepted', () => {
  const accepted = createAcceptedCredentials({ maxKept: 1 });
  const encoded = GENUINE.slice('Basic '.length);
  accepted.answered(GENUINE, 200);
  // Thousands of spellings of one valid credential cannot push another out of the record.
  for (let spaces = 1; spaces <= 50; spaces++) {
    accepted.answered(`bAsIc${' '.repeat(spaces)}${encoded}`, 200);
  }
  expect(accepted.has(GENUINE)).toBe(true);
  expect(accepted.has(`BASIC   ${encoded}`)).toBe(true);
  accepted.answered('Bearer whatever', 200);
  expect(accepted.has('Bearer whatever')).toBe(false);
});

test('When an hour passes without another 2xx, then the credentials are no longer accepted', () => {
  let now = 0;
  const accepted = createAcceptedCredentials({ clock: () => now });
  accepted.answered(GENUINE, 200);
  now = 59 * 60_000;
  accepted.answered(GENUINE, 204);
  now = 118 * 60_000;
  expect(accepted.has(GENUINE)).toBe(true);
  now = 120 * 60_000;
  expect(accepted.has(GENUINE)).toBe(false);
});

test('When more credentials are accepted than are kept, then the least recently accepted go first', () => {
  const accepted = createAcceptedCredentials({ maxKept: 2 });
  const [a, b, c] = ['a', 'b', 'c'].map((token) => basicAuthHeader(PROJECT, token));
  accepted.answered(a, 200);
  accepted.answered(b, 200);
  accepted.answered(a, 200);
  accepted.answered(c, 200);
  expect([a, b, c].map((header) => accepted.has(header))).toEqual([true, false, true]);
});
