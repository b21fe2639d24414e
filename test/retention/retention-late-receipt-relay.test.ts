import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { createRetention, retentionShorterThanTokens } from '../../src/retention/retention';
import { statusEvent } from '../factories';
import { cxmlFields } from '../helpers/callbacks';
import { TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * RETENTION_DAYS counts from a message's last activity, whatever its status, and may be below
 * CALLBACK_TOKEN_TTL_DAYS (default 30). A proxied message still at `sent` (a handset off for a
 * day; ValidityPeriod allows 48 h) is then removed while its token is valid, and its delivery
 * receipt, arriving later, creates it anew from the callback alone. The caller's own status
 * callback was on the removed row only (the send intent went when the proxy recorded the send):
 * the removal leaves it behind as a send intent, so the receipt is still relayed (DESIGN §10).
 */

const DAY = 86_400_000;
const APP_CALLBACK = 'https://app.example.com/sms/status';
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ RETENTION_DAYS: '1' });
});
afterAll(() => t?.close());

/** A message sent through the proxy at `sentAt`, at `status` since a second later. */
async function proxiedSend(sentAt: Date, status: string, clientStatusCallback = APP_CALLBACK) {
  const { token, ref } = mintCallbackToken([TEST_TOKEN_SECRET], sentAt);
  const id = randomUUID();
  await recordEvents(t.database.db, [
    statusEvent('queued', {
      messageId: id,
      source: 'proxy',
      receivedAt: sentAt,
      send: { ref, kind: 'sms', clientStatusCallback, body: null },
    }),
    statusEvent(status, { messageId: id, receivedAt: new Date(sentAt.getTime() + 1000) }),
  ]);
  return { id, ref, token };
}

test('When a proxied message at `sent` is removed by RETENTION_DAYS=1 and its delivery receipt arrives with its still-valid token, then the receipt is relayed to the caller’s own callback', async () => {
  const sentAt = new Date(Date.now() - 2 * DAY);
  const waiting = await proxiedSend(sentAt, 'sent');
  // Removed too, but leaving no intent: a send that is over, one whose token has expired, and
  // a message that did not go through the proxy.
  await proxiedSend(sentAt, 'delivered');
  await proxiedSend(new Date(Date.now() - 40 * DAY), 'sent');
  await recordEvents(t.database.db, [statusEvent('sent', { receivedAt: sentAt })]);

  const lines: Array<{ level: number; msg: string }> = [];
  const retention = createRetention({
    db: t.database.db,
    logger: createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) }),
    registry: new Registry(),
    options: {
      retentionDays: t.config.retentionDays,
      callbackTokenTtlDays: t.config.callbackTokenTtlDays,
    },
  })!;
  expect((await retention.runOnce()).messages).toBe(4);
  // The start log says what such a setting does.
  expect(lines).toContainEqual(
    expect.objectContaining({
      level: 40,
      msg: expect.stringContaining('RETENTION_DAYS (1) is below CALLBACK_TOKEN_TTL_DAYS (30)'),
    }),
  );
  // One intent, for the send still waiting, living as long as its token (from the send on).
  const { rows: intents } = await sql`SELECT * FROM send_intents`.execute(t.database.db);
  expect(intents).toEqual([
    { ref: waiting.ref, client_status_callback: APP_CALLBACK, created_at: sentAt },
  ]);

  // The carrier's receipt, two days after the send: SignalWire calls the token URL.
  await request(t.publicApp)
    .post(`/callbacks/cxml/${waiting.token}`)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send(
      new URLSearchParams(
        cxmlFields({ MessageSid: waiting.id, MessageStatus: 'delivered' }),
      ).toString(),
    )
    .expect(200);

  // (sent_via_proxy is false on the message created anew: only the proxy's own record of the
  // send sets it, and the write path does not take it from the intent.)
  const message = await t.database.db
    .selectFrom('messages')
    .select(['status', 'ref', 'client_status_callback'])
    .where('id', '=', waiting.id)
    .executeTakeFirstOrThrow();
  const jobs = await t.database.db
    .selectFrom('relay_jobs')
    .select(['url'])
    .where('message_id', '=', waiting.id)
    .execute();
  expect({ message, jobs }).toEqual({
    message: { status: 'delivered', ref: waiting.ref, client_status_callback: APP_CALLBACK },
    jobs: [{ url: APP_CALLBACK }],
  });
});

test('When RETENTION_DAYS is at least CALLBACK_TOKEN_TTL_DAYS, or unset, then there is nothing to warn about', () => {
  expect(retentionShorterThanTokens(1, 30)).toContain('is below CALLBACK_TOKEN_TTL_DAYS');
  expect(retentionShorterThanTokens(30, 30)).toBeNull();
  expect(retentionShorterThanTokens(90, 30)).toBeNull();
  expect(retentionShorterThanTokens(undefined, 30)).toBeNull();
});
