import request from 'supertest';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { createRelayTestApp, eventually, seedProxiedMessage } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * DESIGN §10: a message's relays go out one at a time. A dead relay retried through the API
 * is pending again with an id below its message's later relays: it must still wait while one
 * of them is being sent, not go out beside it.
 */

let t: RelayTestApp;
let app: CustomerApp;

beforeAll(async () => {
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '50ms', RELAY_TIMEOUT_MS: '5000' });
  app = await t.customerApp();
  t.startWorker({ tuning: { breaker: { failureThreshold: 1_000 } } });
});

afterAll(() => t.close());

async function jobs(messageId: string) {
  return t.database.db
    .selectFrom('relay_jobs')
    .select(['id', 'state'])
    .where('message_id', '=', messageId)
    .orderBy('id')
    .execute();
}

test('When a dead relay is retried while a later relay of its message is being sent, then it waits for that one to finish', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl());
  // Requests 1-2: `sent`, refused until dead. 3: `delivered`, answered after 2 s. Then `sent`
  // again, once retried.
  let deliveredArrived = false;
  app.behave(id, (n) => {
    if (n <= 2) return { status: 503 };
    if (n === 3) {
      deliveredArrived = true;
      return { status: 200, delayMs: 2_000 };
    }
    return { status: 200 };
  });
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  const [first] = await eventually(async () => {
    const rows = await jobs(id);
    return rows[0]?.state === 'dead' && rows;
  });
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'delivered' })).expect(
    200,
  );
  // The delivered relay is at the app (answered in 2 s) when the operator retries the dead one.
  await eventually(() => deliveredArrived);
  await request(t.internalApp)
    .post(`/v1/relays/${String(first!.id)}/retry`)
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  await eventually(async () => (await jobs(id)).every((job) => job.state === 'delivered'), 20_000);
  expect(app.maxConcurrent([id])).toBe(1);
});
