import { createAcceptedCredentials } from '../../src/proxy/accepted-credentials';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';

/**
 * The record behind an unanswered deletion's erasure (pass-through.routes.ts forgetRedactedText):
 * credentials count as accepted only after a 2xx, for an hour, until a 401 or 403, and the
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

test('When SignalWire answers 401 or 403 to accepted credentials, then they are no longer accepted', () => {
  const accepted = createAcceptedCredentials();
  for (const status of [401, 403]) {
    accepted.answered(GENUINE, 200);
    accepted.answered(GENUINE, 500);
    expect(accepted.has(GENUINE)).toBe(true);
    accepted.answered(GENUINE, status);
    expect(accepted.has(GENUINE)).toBe(false);
  }
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
