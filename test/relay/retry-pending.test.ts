import request from 'supertest';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { createRelayTestApp, eventually, seedProxiedMessage } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * SwStatusRelayBacklog's runbook (README, the alert's description): once a failing app answers
 * again, its pending relays wait for their next scheduled attempt — hours away after a few
 * failures — and `POST /v1/relays/:id/retry` brings one forward. It retried dead relays only
 * (409 for a pending one) until the README review.
 */
let t: RelayTestApp;
let app: CustomerApp;
beforeAll(async () => {
  // The default schedule's shape: after two failures the next attempt is hours away.
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '50ms,2h,6h', RELAY_TIMEOUT_MS: '15000' });
  app = await t.customerApp();
  t.startWorker({ tuning: { breaker: { failureThreshold: 1_000 } } });
});
afterAll(() => t.close());

interface Relay {
  id: number;
  state: string;
  attempts: number;
  next_attempt_at: string;
}

const relayOf = async (messageId: string): Promise<Relay | undefined> => {
  const res = await request(t.internalApp)
    .get('/v1/relays')
    .query({ message_id: messageId })
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  return (res.body as { data: Relay[] }).data[0];
};

const retry = (id: number) =>
  request(t.internalApp).post(`/v1/relays/${id}/retry`).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When an app that failed twice answers again and its pending relay is retried, then the relay is due now, keeps its attempts, and goes out', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl());
  let healthy = false;
  app.behave(id, () => ({ status: healthy ? 200 : 503 }));
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'delivered' })).expect(
    200,
  );
  const pending = await eventually(async () => {
    const relay = await relayOf(id);
    return relay?.state === 'pending' && relay.attempts >= 2 && relay;
  });
  expect(new Date(pending.next_attempt_at).getTime()).toBeGreaterThan(Date.now() + 3_600_000);

  healthy = true;
  const retried = await retry(pending.id).expect(200);
  expect(retried.body).toMatchObject({ id: pending.id, state: 'pending', attempts: 2 });
  expect(new Date(retried.body.next_attempt_at).getTime()).toBeLessThanOrEqual(Date.now());

  await eventually(async () => (await relayOf(id))?.state === 'delivered');
  expect(app.received.filter((r) => r.messageId === id).at(-1)).toMatchObject({
    answered: 200,
    status: 'delivered',
  });
  // Delivered: nothing left to retry.
  const refused = await retry(pending.id).expect(409);
  expect(refused.body.error.code).toBe('already_delivered');
});

test('When a retry names an id beyond 2^53, then it is refused 400, not read as the neighbouring id (ids are read as Numbers)', async () => {
  const named = (id: string) =>
    request(t.internalApp).post(`/v1/relays/${id}/retry`).auth(TEST_API_TOKEN, { type: 'bearer' });
  // 2^53 + 1 would be read as 2^53; 2^53 - 1 is the largest id a Number holds exactly.
  expect((await named('9007199254740993')).body.error.code).toBe('invalid_request');
  expect((await named('9007199254740993')).status).toBe(400);
  expect((await named('9007199254740991')).status).toBe(404);
});
