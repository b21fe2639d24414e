import { createHmac } from 'node:crypto';
import request from 'supertest';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Cursors signed with the service's own key (as feed-cursor.ts signs them) whose payload is
 * not a position this service issues: every one is a 400 invalid_cursor (or, for a
 * well-formed position beyond this database, a 410) — never a 500 or a page.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

function signed(payload: string): string {
  const key = createHmac('sha256', TEST_TOKEN_SECRET)
    .update('sw-status change feed cursor v1')
    .digest();
  const mac = createHmac('sha256', key).update(payload).digest().subarray(0, 16);
  return `${Buffer.from(payload).toString('base64url')}.${mac.toString('base64url')}`;
}

test('When a cursor carries a signed payload that is no position, then the answer is 400 invalid_cursor', async () => {
  for (const payload of [
    '-1.0',
    '1.-1',
    '01.0',
    '1.01',
    '1e3.0',
    '0x10.0',
    '1.2.3',
    '1.2.3.4.5',
    '1.2.3.4.s',
    '1.2.3.4.s01',
    '1.2.3.4.s-1',
    '1.2.3.4.s9007199254740992',
    '1.2.s3',
    '1.2.3.4.S5',
    '1.2.3.4.s5.6',
    '18446744073709551616.0',
    '1.9007199254740992',
    '1.2.18446744073709551616.0',
    ' 1.2',
    '1.2\n',
    '',
    '1..2',
  ]) {
    const res = await get(`/v1/events?after=${signed(payload)}&wait=1`);
    expect([payload, res.status, res.body.error?.code]).toEqual([payload, 400, 'invalid_cursor']);
  }
});

test('When a validly signed cursor lies at the edge of the numbers, then it is 410 cursor_expired, not a 500', async () => {
  for (const payload of [
    '18446744073709551615.9007199254740991',
    '18446744073709551615.0.18446744073709551615.9007199254740991',
    // The longest payload this service issues (a removal step too): within `after`'s 200.
    '18446744073709551615.9007199254740991.18446744073709551615.9007199254740991.s9007199254740991',
  ]) {
    const res = await get(`/v1/events?after=${signed(payload)}`);
    expect([payload, res.status, res.body.error?.code]).toEqual([payload, 410, 'cursor_expired']);
  }
  // A huge removal mark on an early position is judged like any other.
  const res = await get(`/v1/events?after=${signed('0.0.18446744073709551615.0')}&limit=1`);
  expect(res.status).toBe(200);
});

test('When after, limit or wait come twice or malformed, then the answer is a 400', async () => {
  for (const query of [
    'after=now&after=now',
    'after=',
    `after=${'a'.repeat(300)}`,
    'limit=1001',
    'limit=1.5',
    'limit=',
    'wait=-1',
    'wait=NaN',
    'wait=1e9',
    'status=',
    'api=sms',
  ]) {
    const res = await get(`/v1/events?${query}`);
    expect([query, res.status]).toEqual([query, 400]);
  }
});
