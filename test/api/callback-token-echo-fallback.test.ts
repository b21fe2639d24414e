import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { recordEvents } from '../../src/messages/record-events';
import { signJsonBody } from '../../src/signalwire/signing';
import { statusEvent } from '../factories';
import { nativeFields } from '../helpers/callbacks';
import {
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  TEST_TOKEN_SECRET,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * DESIGN §2: a callback token "appears in no log, no stored payload and no answer to the
 * caller". A token past its TTL (a receipt that comes late, or a TTL an operator shortened) or
 * one minted under a retired secret falls back to the signature (README); SignalWire's signed
 * callback to that token URL, echoing the URL it was sent to, must have the token masked in
 * what is stored and relayed all the same — a TTL raised again, or a secret brought back,
 * would make it a credential again.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ CALLBACK_TOKEN_TTL_DAYS: '30' });
});
afterAll(() => t.close());

test.each([
  ['past its TTL', [TEST_TOKEN_SECRET], 40],
  ['minted under a retired secret', ['a-retired-callback-token-secret-0123456789'], 0],
])(
  'When a signed callback to a token URL %s echoes that URL, then neither the stored event nor the relayed body holds the token',
  async (_case, secrets, daysAgo) => {
    const { token, ref } = mintCallbackToken(secrets, new Date(Date.now() - daysAgo * 86_400_000));
    const id = randomUUID();
    await recordEvents(t.database.db, [
      statusEvent('queued', {
        messageId: id,
        api: 'native',
        source: 'proxy',
        send: { ref, kind: 'sms', clientStatusCallback: 'https://app.example.com/s', body: null },
      }),
    ]);
    const path = `/callbacks/native/${token}`;
    const url = `${TEST_PUBLIC_BASE_URL}${path}`;
    const body = JSON.stringify(
      nativeFields({ id, status: 'delivered', status_callback_url: url }),
    );
    const res = await request(t.publicApp)
      .post(path)
      .set('Content-Type', 'application/json')
      .set('X-SignalWire-Signature', signJsonBody(TEST_SIGNING_KEY, url, body))
      .send(body);
    expect(res.status).toBe(200);

    const { rows } = await sql<{ raw: unknown; payload: string }>`
    SELECT e.raw, encode(j.payload, 'escape') AS payload
    FROM status_events e JOIN relay_jobs j ON j.message_id = e.message_id
    WHERE e.message_id = ${id} AND e.source = 'callback'`.execute(t.database.db);
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows[0])).not.toContain(token);
  },
);

describe('with ALLOW_UNSIGNED_CALLBACKS (development)', () => {
  let unsigned: TestApp;
  beforeAll(async () => {
    unsigned = await createTestApp({ ALLOW_UNSIGNED_CALLBACKS: 'true' });
  });
  afterAll(() => unsigned.close());

  test('When a callback comes to a path segment that is no token, then its payload is stored as it came', async () => {
    // Any segment is let in unsigned; only a token's shape is masked, or `…/native/1` would
    // have every "1" of the payload replaced.
    const id = randomUUID();
    const body = JSON.stringify(nativeFields({ id, status: 'delivered', to: '+15551110001' }));
    const res = await request(unsigned.publicApp)
      .post('/callbacks/native/1')
      .set('Content-Type', 'application/json')
      .send(body);
    expect(res.status).toBe(200);
    const { rows } = await sql<{ raw: { to?: string } }>`
      SELECT raw FROM status_events WHERE message_id = ${id}`.execute(unsigned.database.db);
    expect(rows.map((row) => row.raw.to)).toEqual(['+15551110001']);
  });
});
