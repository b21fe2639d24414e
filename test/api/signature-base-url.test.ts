import request from 'supertest';
import { randomUUID } from 'node:crypto';
import { signFormParams } from '../../src/signalwire/signing';
import { TEST_SIGNING_KEY, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * DESIGN §2 verifies "for the URL as SignalWire called it: PUBLIC_BASE_URL + the
 * request's original path and query". The proxy injects `${PUBLIC_BASE_URL}/callbacks/…`
 * verbatim (proxy.service.ts), while `new URL()` lower-cases the host (and punycodes /
 * percent-encodes): a PUBLIC_BASE_URL not already in canonical form must verify as written.
 */
const BASE = 'https://Hooks.Example.com';
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ PUBLIC_BASE_URL: BASE });
});
afterAll(() => t.close());

test('When PUBLIC_BASE_URL has upper-case letters in its host, then a callback signed for exactly that URL verifies', async () => {
  const fields = { MessageSid: randomUUID(), MessageStatus: 'delivered' };
  const res = await request(t.publicApp)
    .post('/callbacks/cxml')
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .set(
      'X-SignalWire-Signature',
      signFormParams(TEST_SIGNING_KEY, `${BASE}/callbacks/cxml`, Object.entries(fields)),
    )
    .send(new URLSearchParams(fields).toString());
  expect(res.status).toBe(200);
});
