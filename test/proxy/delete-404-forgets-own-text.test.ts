import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen, sdkClient, startUpstreamTap, compatMessageResource } from './support';
import type { CannedResponse, Listening, TappedRequest, UpstreamTap } from './support';

/**
 * A deletion SignalWire answers 404 says the message is gone there (deleted by an earlier try
 * answered late, or in SignalWire's own dashboard) — or that it was never the caller's. Its text
 * is forgotten here only when the message is recorded as the caller's project's (its Basic-auth
 * username): another project's credentials can never wipe a message's text, and a message with
 * no project recorded keeps it. Any other failed answer (a 5xx) keeps the text, as before.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const OTHER = '0f6c3b59-6a2d-4a53-9f1e-5a6d0c7b8e21';
const TOKEN = 'PTdelete404own';

const compatMessage = (sid: string) =>
  compatMessageResource(PROJECT, sid, 'my one-time code is 777111');

const notFound: CannedResponse = {
  status: 404,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    code: 20404,
    message: 'The requested resource was not found',
    more_info: 'https://developer.signalwire.com',
    status: 404,
  }),
};

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

/** A message sent through the proxy by PROJECT, its text stored. */
async function sent(): Promise<string> {
  const sid = randomUUID();
  answer = () => ({
    status: 201,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(compatMessage(sid)),
  });
  await sdkClient(proxy.url, PROJECT, TOKEN).messages.create({
    to: '+15557654321',
    from: '+15551234567',
    body: 'my one-time code is 777111',
  });
  expect(await storedText(sid)).toBe(true);
  return sid;
}

async function storedText(sid: string): Promise<boolean> {
  const stored = await request(t.internalApp)
    .get(`/v1/messages/${sid}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  expect(stored.status).toBe(200);
  return JSON.stringify(stored.body).includes('one-time code');
}

async function remove(sid: string, project: string): Promise<unknown> {
  return sdkClient(proxy.url, project, TOKEN)
    .messages(sid)
    .remove()
    .then(
      () => 'ok',
      (e: { status?: number }) => e.status,
    );
}

test('When the message’s own project deletes it and SignalWire answers 404 (already gone), then its text is forgotten', async () => {
  const sid = await sent();
  answer = () => notFound;
  expect(await remove(sid, PROJECT)).toBe(404);
  expect(await storedText(sid)).toBe(false);
});

test('When another project’s credentials delete the message and SignalWire answers 404, then its text is kept', async () => {
  const sid = await sent();
  answer = () => notFound;
  expect(await remove(sid, OTHER)).toBe(404);
  expect(tap.requests.at(-1)).toMatchObject({ method: 'DELETE' });
  expect(await storedText(sid)).toBe(true);
});

test('When a message with no project recorded is deleted and SignalWire answers 404, then its text is kept', async () => {
  const sid = await sent();
  await sql`UPDATE messages SET project_id = NULL WHERE id = ${sid}`.execute(t.database.db);
  answer = () => notFound;
  expect(await remove(sid, PROJECT)).toBe(404);
  expect(await storedText(sid)).toBe(true);
});

test('When SignalWire answers a deletion 500, then its text is kept', async () => {
  const sid = await sent();
  answer = () => ({ ...notFound, status: 500 });
  expect(await remove(sid, PROJECT)).toBe(500);
  expect(await storedText(sid)).toBe(true);
});
