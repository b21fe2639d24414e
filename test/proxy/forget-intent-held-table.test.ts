import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from 'pg';
import request from 'supertest';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { eventually } from '../helpers/eventually';
import { backendsWaitingOnLock } from '../helpers/lock-waits';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * A send whose intent was written, then refused by SignalWire (4xx), deletes its intent
 * (proxy.service.ts forgetIntent) before answering its caller. If another session holds
 * send_intents at that moment (CREATE INDEX without CONCURRENTLY, an operator's LOCK TABLE left
 * open), the DELETE cannot finish: the caller must still get SignalWire's 400 promptly, not
 * once the lock goes (measured before the fix: no answer within 10 s).
 */

const PROJECT = 'd4e5f6a7-b8c9-4012-9ef0-3456789abcde';
const AUTH = basicAuthHeader(PROJECT, 'PTchaosforget');
const PATH = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;

let t: TestApp;
let operator: Client | undefined;
let upstream: ReturnType<typeof createServer>;

beforeAll(async () => {
  // SignalWire refuses the send (400) — but first, another session takes send_intents.
  upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      void (async () => {
        operator = new Client({ connectionString: t.database.url });
        operator.on('error', () => undefined);
        await operator.connect();
        await operator.query('BEGIN');
        await operator.query('LOCK TABLE send_intents IN SHARE MODE');
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ code: 21211, message: "The 'To' number is not valid", status: 400 }),
        );
      })();
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const { port } = upstream.address() as AddressInfo;
  t = await createTestApp({ SIGNALWIRE_SPACE_URL: `http://127.0.0.1:${port}` });
});

afterAll(async () => {
  await operator?.query('ROLLBACK').catch(() => undefined);
  await operator?.end().catch(() => undefined);
  await t.close();
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
});

test('When SignalWire refuses a send while another session holds send_intents, then the caller still gets the 400 within a few seconds', async () => {
  const started = Date.now();
  const answer = request(t.internalApp)
    .post(PATH)
    .set('Authorization', AUTH)
    .type('form')
    .send({
      To: '+15557650000',
      From: '+15551234567',
      Body: 'x',
      StatusCallback: 'https://app.example.com/sms/status',
    })
    .timeout(10_000)
    .then(
      (res) => ({ status: res.status, ms: Date.now() - started }),
      (err: Error) => ({ status: -1, ms: Date.now() - started, err: err.message }),
    );
  const res = await answer;
  expect(res).toMatchObject({ status: 400 });
  expect(res.ms).toBeLessThan(5_000);
  // And the DELETE the lock held does not keep its connection while the lock lasts: its
  // statement timeout ends it (the operator still holds send_intents here).
  await eventually(
    async () => (await backendsWaitingOnLock(t.database.url)) === 0,
    'the intent delete waiting for the lock given up',
    5_000,
  );
}, 30_000);
