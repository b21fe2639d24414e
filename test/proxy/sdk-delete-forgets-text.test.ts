import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen, sdkClient, startUpstreamTap, compatMessageResource } from './support';
import type { CannedResponse, Listening, TappedRequest, UpstreamTap } from './support';

/**
 * An app deletes a message through the official SDK pointed at the proxy,
 * `client.messages(sid).remove()`, to erase it (a one-time code, a person's request).
 * SignalWire answers 204: the message, its text included, is gone there — and so must its text
 * be here (STORE_BODY=true), as after the weaker erasure, an update that empties its body.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTsdkdeleteforgets';

const compatMessage = (sid: string) =>
  compatMessageResource(PROJECT, sid, 'my one-time code is 123456');

let answer: (req: TappedRequest) => CannedResponse;
let tap: UpstreamTap;
let t: TestApp;
let proxy: Listening;

beforeAll(async () => {
  tap = await startUpstreamTap((req) => answer(req));
  t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url, STORE_BODY: 'true' });
  proxy = await listen(t.internalApp);
});
afterAll(async () => {
  await proxy.close();
  await t.close();
  await tap.close();
});

test('When the app deletes a message through the SDK and SignalWire answers 204, then sw-status no longer holds its text', async () => {
  const sid = randomUUID();
  const client = sdkClient(proxy.url, PROJECT, TOKEN);
  answer = () => ({
    status: 201,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(compatMessage(sid)),
  });
  await client.messages.create({
    to: '+15557654321',
    from: '+15551234567',
    body: 'my one-time code is 123456',
  });

  answer = () => ({ status: 204, body: '' });
  await expect(client.messages(sid).remove()).resolves.toBe(true);
  expect(tap.requests.at(-1)).toMatchObject({ method: 'DELETE' });

  const stored = await request(t.internalApp)
    .get(`/v1/messages/${sid}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  expect(stored.status).toBe(200);
  // The text SignalWire deleted must not live on here (as after a redaction: body "").
  expect(stored.body.body ?? '').toBe('');
  expect(JSON.stringify(stored.body)).not.toContain('one-time code');
});
