import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { E2E_FROM, E2E_PROJECT, E2E_TOKEN, startStack } from '../e2e/stack';
import type { Stack } from '../e2e/stack';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { sdkClient } from '../proxy/support';

/**
 * The local stack as README "Quick start" and "Using the send proxy from your application" set
 * it up: the simulator as SignalWire, an app's official SDK client pointed at the internal
 * listener and nothing else changed. The everyday reads that work against SignalWire (the
 * Messages list with its paging, the Media subresource, deletion, the native log list) work
 * here too, and a deletion erases the stored text only of a message SignalWire no longer holds.
 */

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ simulator: { stepDelayMs: 3_600_000 }, env: { STORE_BODY: 'true' } });
});
afterAll(() => stack.close());

const client = () => sdkClient(stack.internalUrl, E2E_PROJECT, E2E_TOKEN);

const storedBody = async (sid: string): Promise<unknown> =>
  (
    await request(stack.app.internalApp)
      .get(`/v1/messages/${sid}`)
      .set('Authorization', `Bearer ${TEST_API_TOKEN}`)
  ).body.body;

test('When an app lists its messages through the SDK, then the message it just sent is listed, page after page', async () => {
  const sent = await client().messages.create({ to: '+15551230001', from: E2E_FROM, body: 'hi' });
  await client().messages.create({ to: '+15551230001', from: E2E_FROM, body: 'hi again' });

  // A page of one: the SDK follows next_page_uri, resolved against the internal listener.
  const listed = await client().messages.list({ limit: 20, pageSize: 1 });

  expect(listed.map((m) => m.sid)).toContain(sent.sid);
});

test('When an app lists the media of an MMS it sent through the SDK, then both media are listed', async () => {
  const sent = await client().messages.create({
    to: '+15551230001',
    from: E2E_FROM,
    body: 'pic',
    mediaUrl: ['https://example.com/a.png', 'https://example.com/b.png'],
  });

  const media = await client().messages(sent.sid).media.list();

  expect(media.map((m) => m.parentSid)).toEqual([sent.sid, sent.sid]);
});

test('When an app deletes a message through the SDK, then remove() succeeds, the message is gone at SignalWire, and only then is its stored text erased', async () => {
  const sent = await client().messages.create({
    to: '+15551230001',
    from: E2E_FROM,
    body: 'my code 123456',
  });
  const before = await storedBody(sent.sid);

  const outcome = await client()
    .messages(sent.sid)
    .remove()
    .then(
      () => 'removed',
      (e: { status?: number }) => e.status,
    );
  const fetched = await client()
    .messages(sent.sid)
    .fetch()
    .then(
      (m) => m.body,
      (e: { status?: number }) => e.status,
    );

  expect({ before, outcome, fetched, after: await storedBody(sent.sid) }).toEqual({
    before: 'my code 123456',
    outcome: 'removed',
    fetched: 404,
    after: '',
  });
});

test('When an app lists native message logs through the local stack, then it gets a page of logs', async () => {
  const res = await fetch(`${stack.internalUrl}/api/messaging/logs?page_size=10`, {
    headers: { authorization: basicAuthHeader(E2E_PROJECT, E2E_TOKEN) },
  });
  const page = (await res.json()) as { links: { self: string }; data: Array<{ id: string }> };

  expect(res.status).toBe(200);
  expect(page.data.length).toBeGreaterThan(0);
  expect(page.links.self).toContain('/api/messaging/logs?');
});
