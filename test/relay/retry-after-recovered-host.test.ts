import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createRelayTestApp, eventually, relayJobWhen, seedProxiedMessage } from './support';
import type { RelayTestApp } from './support';

/**
 * An app's Retry-After ends when its host answers again (found by review, diff1). One 503 with
 * Retry-After: 86400 — a maintenance page that says "back tomorrow" over a few minutes' deploy
 * — held that message's relay for a day, and with it (a message's jobs go out one at a time)
 * every later callback of the message, although the same host answered 2xx to other messages'
 * relays a minute later. A delivery to the host now brings its jobs held by a Retry-After
 * forward to their schedule's step (relay.repository.ts recordOutcomes).
 */

let t: RelayTestApp;

beforeAll(async () => {
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '100ms,100ms,100ms' });
  t.startWorker();
});
afterAll(() => t.close());

test('When the app answered one relay 503 Retry-After: 86400 and then a relay to it is delivered, then the held message’s callbacks go out soon after, in order', async () => {
  const app = await t.customerApp();
  const held = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/app'));
  const other = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/app'));
  app.behave(held, (n) =>
    n === 1 ? { status: 503, headers: { 'Retry-After': '86400' } } : { status: 200 },
  );
  app.behave(other, () => ({ status: 200 }));

  await postCxml(t.publicApp, cxmlFields({ MessageSid: held, MessageStatus: 'sent' })).expect(200);
  const waiting = await relayJobWhen(t.database.db, held, (row) => row.attempts === 1);
  // The app's day is obeyed while nothing says the host is back.
  expect(waiting.last_status).toBe(503);
  expect(waiting.next_attempt_at.getTime()).toBeGreaterThan(Date.now() + 23 * 3_600_000);
  // The message's final status arrives: its relay queues behind the held one.
  await postCxml(t.publicApp, cxmlFields({ MessageSid: held, MessageStatus: 'delivered' })).expect(
    200,
  );
  // The app is back: another message's relay is delivered.
  await postCxml(t.publicApp, cxmlFields({ MessageSid: other, MessageStatus: 'delivered' })).expect(
    200,
  );
  await eventually(() => app.received.some((r) => r.messageId === other && r.answered === 200));

  await eventually(
    () => app.received.some((r) => r.messageId === held && r.status === 'delivered'),
    5_000,
  );
  const statuses = app.received.filter((r) => r.messageId === held).map((r) => r.status);
  expect(statuses).toEqual(['sent', 'sent', 'delivered']);
});
