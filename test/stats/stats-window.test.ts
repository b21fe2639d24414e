import request from 'supertest';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * GET /v1/stats at the edges of what a window can be. Every answer is checked against the
 * OpenAPI document too (test/helpers/openapi-setup.ts): `created_since` / `created_until` are
 * ISO 8601 date-times, whose year has four digits.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When a window bound lies past the year 9999 (a negative offset on 9999-12-31), then the answer is a 400 in the error shape, not a body with a timestamp no ISO 8601 reader takes', async () => {
  for (const path of [
    '/v1/stats?created_since=2026-01-01&created_until=9999-12-31T23:59:59-23:59',
    '/v1/stats?created_until=9999-12-31T23:00:00-05:00',
  ]) {
    const res = await get(path);
    expect({ path, status: res.status }).toEqual({ path, status: 400 });
    expect(res.body.error).toMatchObject({ code: 'invalid_window' });
    expect(typeof res.body.error.request_id).toBe('string');
  }
  // The last representable instant still works.
  const last = await get(
    '/v1/stats?created_since=9999-12-31T00:00:00Z&created_until=9999-12-31T23:59:59.999Z',
  ).expect(200);
  expect(last.body.created_until).toBe('9999-12-31T23:59:59.999Z');
});

test.each([
  [
    'created_since=2026-10-01T00:00:01Z&created_until=2026-10-01T00:00:01Z',
    'created_since must be before created_until',
  ],
  // No created_until: the window ends now, and the message says so rather than naming a
  // parameter the caller never sent.
  [
    'created_since=9000-01-01T00:00:00Z',
    'created_since must be in the past when created_until is not given (the window ends now)',
  ],
])(
  'When a stats window is empty or reversed (%s), then 400 invalid_window says why',
  async (window, message) => {
    const res = await get(`/v1/stats?${window}`);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_window', message });
  },
);
