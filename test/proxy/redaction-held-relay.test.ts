import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Client } from 'pg';
import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { probeCallback } from '../helpers/callback-probe';
import { eventually } from '../helpers/eventually';
import { backendsWaitingOnLock } from '../helpers/lock-waits';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { startUpstreamTap } from './support';
import type { UpstreamTap } from './support';

/**
 * A DELETE of a message passed through the proxy (SignalWire answers 204) forgets the message's
 * text here (pass-through.routes.ts forgetRedactedText), the relay's copies included
 * (relay-redaction.ts). The caller is answered after STORE_TIMEOUT_MS at most; the redaction's
 * statements must not keep their connections for as long as another session holds the relay's
 * row (an operator's SELECT … FOR UPDATE left open — the scenario of
 * test/relay/retry-of-held-relay.test.ts), nor a dozen of them take the whole primary pool
 * (measured before the fix: the callback answered 503, not stored).
 */

const PROJECT = 'd4e5f6a7-b8c9-4012-9ef0-3456789abcde';
const AUTH = basicAuthHeader(PROJECT, 'PTchaosredact');

let tap: UpstreamTap;
let t: TestApp;
let operator: Client | undefined;

beforeAll(async () => {
  tap = await startUpstreamTap(() => ({ status: 204, body: '' }));
  t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url });
});
afterAll(async () => {
  await operator?.query('ROLLBACK').catch(() => undefined);
  await operator?.end().catch(() => undefined);
  await t.close();
  await tap.close();
});

test('When apps delete a message whose delivered relay another session holds, then callbacks of other messages are still committed within 5 s', async () => {
  const baseline = await probeCallback(t.publicApp, t.database.url);
  expect(baseline).toMatchObject({ status: 200, stored: true });

  const sid = randomUUID();
  const { rows } = await sql<{ id: string }>`
    INSERT INTO relay_jobs (message_id, url, host, method, state, attempts, payload, delivered_at)
    VALUES (${sid}, 'https://app.example.com/cb', 'https://app.example.com:443', 'POST',
            'delivered', 1, ${Buffer.from('Body=hello&MessageStatus=delivered')}, now())
    RETURNING id`.execute(t.database.db);
  operator = new Client({ connectionString: t.database.url });
  operator.on('error', () => undefined);
  await operator.connect();
  await operator.query('BEGIN');
  await operator.query('SELECT 1 FROM relay_jobs WHERE id = $1 FOR UPDATE', [rows[0]!.id]);

  // An app deleting the message; its client retries when it gets no answer fast enough.
  const deletes = await Promise.all(
    Array.from({ length: 12 }, () =>
      request(t.internalApp)
        .delete(`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/${sid}.json`)
        .set('Authorization', AUTH),
    ),
  );
  expect(deletes.map((res) => res.status)).toEqual(Array(12).fill(204));

  const underLock = await probeCallback(t.publicApp, t.database.url);
  expect(underLock).toMatchObject({ status: 200, stored: true });
  expect(underLock.ms).toBeLessThan(5_000);
  // And the redactions the row held keep at most their two turns' connections while it is held
  // (the others wait for a turn, holding none), each for its statement timeout: they all end
  // while the operator still holds the relay's row.
  // None waiting for 2.5 s on end: past the gap between one's timeout and the next one's start.
  let noneSince: number | null = null;
  let most = 0;
  await eventually(
    async () => {
      const waiting = await backendsWaitingOnLock(t.database.url);
      most = Math.max(most, waiting);
      if (waiting > 0) noneSince = null;
      else noneSince ??= Date.now();
      return noneSince !== null && Date.now() - noneSince > 2_500;
    },
    'the redactions waiting for the held row given up',
    40_000,
  );
  expect(most).toBeGreaterThan(0);
  expect(most).toBeLessThanOrEqual(2);
}, 60_000);
