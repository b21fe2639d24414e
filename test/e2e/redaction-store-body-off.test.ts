import { sql } from 'kysely';
import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from '../proxy/support';
import { E2E_PROJECT, E2E_TOKEN, deliverComposedEarlier, startStack } from './stack';
import type { Stack } from './stack';

/**
 * STORE_BODY is read at start: a service that ran with it on, then restarted with it off,
 * still holds the texts it stored meanwhile. A message SignalWire redacts after the restart
 * must lose that text here too ("cannot be recovered"), whatever STORE_BODY says now; and a
 * message redacted while it was off stays so when it is on again.
 */

let stack: Stack;
let restarted: TestApp;
let restartedUrl: string;
let closeListener: () => Promise<void>;

beforeAll(async () => {
  stack = await startStack({ env: { STORE_BODY: 'true' } });
  // The same database and SignalWire, the service restarted with STORE_BODY off.
  restarted = await createTestApp(
    {
      PUBLIC_BASE_URL: stack.publicUrl,
      SIGNALWIRE_SPACE_URL: stack.sim.url,
      SIGNALWIRE_SIGNING_KEYS: SIMULATOR_SIGNING_KEY,
      STORE_BODY: 'false',
    },
    { database: stack.app.database },
  );
  const listener = await listen(restarted.internalApp);
  restartedUrl = listener.url;
  closeListener = () => listener.close();
});

afterAll(async () => {
  await closeListener();
  await restarted.close();
  await stack.close();
});

function redactThroughRestarted(id: string): Promise<Response> {
  return fetch(`${restartedUrl}/api/messaging/messages/${id}`, {
    method: 'PATCH',
    headers: {
      authorization: basicAuthHeader(E2E_PROJECT, E2E_TOKEN),
      'content-type': 'application/json',
    },
    body: JSON.stringify({ body: '' }),
  });
}

/** The message as the service restarted with STORE_BODY off answers it. */
async function messageThroughRestarted(id: string): Promise<unknown> {
  const res = await fetch(`${restartedUrl}/v1/messages/${id}`, {
    headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
  });
  expect(res.status).toBe(200);
  return res.json();
}

/** As a run with STORE_BODY=false stores it (this stack's receiver stores texts). */
async function withoutText(id: string): Promise<void> {
  await sql`UPDATE messages SET body = NULL WHERE id = ${id}`.execute(stack.app.database.db);
  await sql`UPDATE status_events SET raw = raw - 'body' WHERE message_id = ${id}`.execute(
    stack.app.database.db,
  );
}

test('When a message stored with STORE_BODY on is redacted after a restart with it off, then its text is gone here too', async () => {
  const id = await stack.send('native', '+15557402010', { body: 'my one-time code is 424242' });
  await stack.sim.waitForIdle();
  expect((await stack.message(id))?.body).toBe('my one-time code is 424242');

  expect((await redactThroughRestarted(id)).status).toBe(200);

  const { rows } = await sql<{ body: string | null; texts: string }>`
    SELECT m.body, (SELECT count(*) FROM status_events e WHERE e.message_id = m.id
                      AND (e.raw ? 'Body' OR e.raw ? 'body')) AS texts
    FROM messages m WHERE m.id = ${id}`.execute(stack.app.database.db);
  expect(rows).toEqual([{ body: '', texts: 0 }]);
  expect(await messageThroughRestarted(id)).not.toHaveProperty('body');
});

test('When a message redacted with STORE_BODY off gets a callback with its text once it is on again, then the text stays gone', async () => {
  const id = await stack.send('native', '+15557402012', { body: 'my one-time code is 939393' });
  await stack.sim.waitForIdle();
  await withoutText(id);
  // SignalWire's view of the message when it composed a callback it sends again later.
  const before = { ...stack.sim.messages.find((m) => m.id === id)! };
  expect((await redactThroughRestarted(id)).status).toBe(200);

  // The stack's receiver is the service with STORE_BODY on again.
  const retry = await deliverComposedEarlier(before);
  expect(retry.sent).toMatchObject({ body: 'my one-time code is 939393' });
  expect(retry.status).toBe(200);

  const { rows } = await sql<{ body: string | null; texts: number }>`
    SELECT m.body, (SELECT count(*) FROM status_events e WHERE e.message_id = m.id
                      AND e.raw::text LIKE '%939393%')::int AS texts
    FROM messages m WHERE m.id = ${id}`.execute(stack.app.database.db);
  expect(rows).toEqual([{ body: '', texts: 0 }]);
  // With STORE_BODY on, the message shows as SignalWire shows a redacted one.
  expect((await stack.message(id))?.body).toBe('');
  // With it off, still no body.
  expect(await messageThroughRestarted(id)).not.toHaveProperty('body');
});

test('When a message that holds no text is redacted with STORE_BODY off, then it still shows no body', async () => {
  const id = await stack.send('native', '+15557402011', { body: 'secret' });
  await stack.sim.waitForIdle();
  await withoutText(id);
  expect((await redactThroughRestarted(id)).status).toBe(200);
  expect(await messageThroughRestarted(id)).not.toHaveProperty('body');
});
