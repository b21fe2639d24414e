import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { cxmlFields, nativeFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * DESIGN §2: a callback token "appears in no log, no stored payload and no answer to the
 * caller". A callback that echoes the URL it was sent to — as the native create's answer does
 * with `status_callback_url`; callbacks may gain fields without notice — carries the token in
 * its body: it is stored and relayed to the app's own callback with `[token]` in its place.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** A message sent through the proxy with the app's own callback, and its token. */
async function proxiedMessage(api: 'cxml' | 'native') {
  const { token, ref } = mintCallbackToken([TEST_TOKEN_SECRET]);
  const id = randomUUID();
  await recordEvents(t.database.db, [
    statusEvent('queued', {
      messageId: id,
      api,
      source: 'proxy',
      send: { ref, kind: 'sms', clientStatusCallback: 'https://app.example.com/s', body: null },
    }),
  ]);
  return { id, token, url: `${TEST_PUBLIC_BASE_URL}/callbacks/${api}/${token}` };
}

async function stored(id: string): Promise<string> {
  const { rows } = await sql<{ raw: unknown; payload: string }>`
    SELECT e.raw, encode(j.payload, 'escape') AS payload
    FROM status_events e JOIN relay_jobs j ON j.message_id = e.message_id
    WHERE e.message_id = ${id} AND e.source = 'callback'`.execute(t.database.db);
  expect(rows).toHaveLength(1);
  return JSON.stringify(rows[0]);
}

test('When a native callback echoes its token URL, then neither the stored event nor the relayed body holds the token', async () => {
  const { id, token, url } = await proxiedMessage('native');
  const res = await request(t.publicApp)
    .post(`/callbacks/native/${token}`)
    .send(nativeFields({ id, status: 'delivered', status_callback_url: url }));
  expect(res.status).toBe(200);

  const row = await stored(id);
  expect(row).not.toContain(token);
  expect(row).toContain('/callbacks/native/[token]');
});

test('When a form callback echoes its token URL, then neither the stored event nor the relayed body holds the token', async () => {
  const { id, token, url } = await proxiedMessage('cxml');
  const res = await request(t.publicApp)
    .post(`/callbacks/cxml/${token}`)
    .type('form')
    .send(cxmlFields({ MessageSid: id, MessageStatus: 'delivered', StatusCallback: url }));
  expect(res.status).toBe(200);

  const row = await stored(id);
  expect(row).not.toContain(token);
  expect(row).toContain('%5Btoken%5D');
});
