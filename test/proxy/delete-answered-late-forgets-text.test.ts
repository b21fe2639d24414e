import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen, sdkClient, compatMessageResource } from './support';
import type { Listening } from './support';

/**
 * An app deletes a message; SignalWire deletes it but its answer comes too late: the proxy
 * answers 504 (the outcome is unknown). The app's SDK call fails, so it retries the deletion, and
 * SignalWire now answers 404 (the message is gone). The app asked for the erasure and SignalWire
 * did it: the text is forgotten here too (pass-through.routes.ts forgetRedactedText, on the
 * unknown outcome and on the 404 to the message's own project).
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTdeleteafter504';

const compatMessage = (sid: string) =>
  compatMessageResource(PROJECT, sid, 'my one-time code is 654321');

let deletes = 0;
let created: Record<string, unknown> | undefined;
let upstream: Listening;
let t: TestApp;
let proxy: Listening;

beforeAll(async () => {
  // SignalWire: a create answers 201; the first DELETE is acted on but answered after 3 s (past
  // SIGNALWIRE_TIMEOUT_MS), any later one finds the message gone (404).
  upstream = await listen((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'POST') {
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(created));
      } else if (req.method === 'DELETE' && deletes++ === 0) {
        setTimeout(() => res.writeHead(204).end(), 3_000);
      } else {
        res.writeHead(404, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            code: 20404,
            message: 'The requested resource was not found',
            more_info: 'https://developer.signalwire.com',
            status: 404,
          }),
        );
      }
    });
  });
  t = await createTestApp({
    SIGNALWIRE_SPACE_URL: upstream.url,
    STORE_BODY: 'true',
    SIGNALWIRE_TIMEOUT_MS: '1000',
  });
  proxy = await listen(t.internalApp);
});
afterAll(async () => {
  await proxy.close();
  await t.close();
  await upstream.close();
});

test('When a deletion SignalWire acted on is answered 504 and the app’s retry gets 404 (already gone), then the service does not keep the deleted text', async () => {
  const sid = randomUUID();
  const client = sdkClient(proxy.url, PROJECT, TOKEN);
  created = compatMessage(sid);
  await client.messages.create({
    to: '+15557654321',
    from: '+15551234567',
    body: 'my one-time code is 654321',
  });

  const first = await client
    .messages(sid)
    .remove()
    .then(
      () => 'ok',
      (e: { status?: number }) => e.status,
    );
  expect(first).toBe(504);
  // The app retries, as a failed call invites it to: SignalWire says the message is gone.
  const retry = await client
    .messages(sid)
    .remove()
    .then(
      () => 'ok',
      (e: { status?: number }) => e.status,
    );
  expect(retry).toBe(404);

  await new Promise((r) => setTimeout(r, 3_000));
  const stored = await request(t.internalApp)
    .get(`/v1/messages/${sid}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  expect(stored.status).toBe(200);
  expect(JSON.stringify(stored.body)).not.toContain('one-time code');
}, 30_000);
