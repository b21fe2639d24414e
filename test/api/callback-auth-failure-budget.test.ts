import { randomUUID } from 'node:crypto';
import express from 'express';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { errorHandler } from '../../src/http/error-handler';
import { publicAuthFailureBudget } from '../../src/http/rate-limit';
import { createLogger } from '../../src/logger';
import { signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { usePublicListener } from '../helpers/public-listener';
import { exchangeRaw, expectErrorShape, storedEventCount } from '../helpers/raw-http';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, TEST_TOKEN_SECRET } from '../helpers/test-app';
import { sample, scrape } from '../ops/scrape';

/**
 * A forged callback costs nothing before its credentials are checked (DESIGN §2): a JSON body
 * is verified on its raw bytes before it is parsed, and a client address past its budget of
 * refused authentications (RATE_LIMIT_PUBLIC_AUTH_FAILURES_PER_MINUTE) is refused 429 before
 * its body is read — except for callbacks a valid per-send token authenticates.
 */

const BUDGET = 3;

const listener = usePublicListener({
  TRUST_PROXY: '1',
  RATE_LIMIT_PUBLIC_PER_MINUTE: '100000',
  RATE_LIMIT_PUBLIC_AUTH_FAILURES_PER_MINUTE: String(BUDGET),
});

/** A native callback with a signature that does not verify, from `ip`. */
const forgedNative = (ip: string, body = JSON.stringify(nativeFields())) =>
  request(listener.t.publicApp)
    .post('/callbacks/native')
    .set('X-Forwarded-For', ip)
    .set('Content-Type', 'application/json')
    .set('X-SignalWire-Signature', 'ffffffffffffffffffffffffffffffffffffffff')
    .send(body);

/** Uses up `ip`'s budget of refused authentications. */
async function exhaust(ip: string): Promise<void> {
  for (let i = 0; i < BUDGET; i++) await forgedNative(ip).expect(403);
}

/** A limiter's 429s, whoever they were answered to. */
const limitedCount = async (limiter: string): Promise<number> => {
  const text = await scrape(listener.t.internalApp);
  return (['authenticated', 'unverified'] as const).reduce(
    (total, sender) =>
      total + (sample(text, 'sw_status_rate_limited_total', { limiter, sender }) ?? 0),
    0,
  );
};

describe('a JSON callback is verified before it is parsed', () => {
  test('When a native callback with a junk signature has a body that is not JSON, then it is refused 403 invalid_signature; signed, the same body is a 400', async () => {
    const body = '{"id": "not closed';
    const forged = await forgedNative('192.0.2.1', body).expect(403);
    expect(forged.body.error.code).toBe('invalid_signature');
    // What verified is parsed, and refused for what it is.
    const signed = await request(listener.t.publicApp)
      .post('/callbacks/native')
      .set('X-Forwarded-For', '192.0.2.1')
      .set('Content-Type', 'application/json')
      .set(
        'X-SignalWire-Signature',
        signJsonBody(TEST_SIGNING_KEY, `${TEST_PUBLIC_BASE_URL}/callbacks/native`, body),
      )
      .send(body)
      .expect(400);
    expect(signed.body.error.code).toBe('malformed_body');
  });

  test('When a native callback with a junk signature nests deeper than the parser allows, then it is refused 403, not 400', async () => {
    const res = await forgedNative('192.0.2.2', `${'['.repeat(5_000)}${']'.repeat(5_000)}`);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('invalid_signature');
  });
});

describe('a client address past its refused authentications', () => {
  test('When an address has had its refused authentications, then its next forged callback is refused 429 at once, its body never read', async () => {
    await exhaust('198.51.100.10');
    // A body is declared and never sent: only an answer that does not wait for it comes back.
    const answer = await exchangeRaw(
      listener.port,
      'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\n' +
        'X-Forwarded-For: 198.51.100.10\r\nContent-Type: application/json\r\n' +
        'X-SignalWire-Signature: ffffffffffffffffffffffffffffffffffffffff\r\n' +
        'Content-Length: 60000\r\n\r\n',
    );
    expectErrorShape(answer, 429, 'rate_limited');
    expect(Number(answer.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(answer.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(answer.headers['connection']).toBe('close');
  });

  test('When an address is past its budget, then its unauthenticated callbacks are refused 429, its token-authenticated ones still stored — and once one authenticated, it is trusted again', async () => {
    const ip = '198.51.100.20';
    await exhaust(ip);
    // Without a valid token, even a genuine signature waits for the window: none is read.
    const signedId = randomUUID();
    const signed = await postNative(listener.t.publicApp, nativeFields({ id: signedId })).set(
      'X-Forwarded-For',
      ip,
    );
    expect(signed.status).toBe(429);
    expect(signed.body.error.code).toBe('rate_limited');
    // A malformed token is no token: 429 too.
    await request(listener.t.publicApp)
      .post('/callbacks/native/not-a-token')
      .set('X-Forwarded-For', ip)
      .send(nativeFields())
      .expect(429);
    expect(await storedEventCount(listener.t.database.db, signedId)).toBe(0);

    const { token } = mintCallbackToken([TEST_TOKEN_SECRET]);
    const id = randomUUID();
    await request(listener.t.publicApp)
      .post(`/callbacks/native/${token}`)
      .set('X-Forwarded-For', ip)
      .send(nativeFields({ id }))
      .expect(200);
    expect(await storedEventCount(listener.t.database.db, id)).toBe(1);
    // An address that authenticated a callback is SignalWire's: its signed callbacks are read
    // again, though its budget is still spent.
    await postNative(listener.t.publicApp, nativeFields({ id: signedId }))
      .set('X-Forwarded-For', ip)
      .expect(200);
    expect(await storedEventCount(listener.t.database.db, signedId)).toBe(1);
  });

  test('When another SignalWire project’s webhooks, from SignalWire’s address, are refused 403, then this project’s signed callbacks from that address are still stored', async () => {
    // SignalWire calls every project's webhooks from the same few addresses, each signed with
    // its own project's key: another customer can point its webhooks here.
    const signalwire = '203.0.113.7';
    await postCxml(listener.t.publicApp, cxmlFields())
      .set('X-Forwarded-For', signalwire)
      .expect(200);
    for (let i = 0; i < BUDGET + 2; i++) {
      await postCxml(listener.t.publicApp, cxmlFields(), {
        key: 'PSKanotherprojectsigningkey000000',
      })
        .set('X-Forwarded-For', signalwire)
        .expect(403);
    }
    const sid = randomUUID();
    await postCxml(listener.t.publicApp, cxmlFields({ MessageSid: sid }))
      .set('X-Forwarded-For', signalwire)
      .expect(200);
    expect(await storedEventCount(listener.t.database.db, sid)).toBe(1);
  });

  test('When one address is past its budget, then another address’s signed callbacks are accepted', async () => {
    await exhaust('198.51.100.30');
    await forgedNative('198.51.100.30').expect(429);
    const id = randomUUID();
    await postNative(listener.t.publicApp, nativeFields({ id }))
      .set('X-Forwarded-For', '198.51.100.31')
      .expect(200);
    await postCxml(listener.t.publicApp, cxmlFields())
      .set('X-Forwarded-For', '198.51.100.31')
      .expect(200);
    expect(await storedEventCount(listener.t.database.db, id)).toBe(1);
  });

  test('When requests without any credentials are refused 401, then they use the budget too', async () => {
    const ip = '198.51.100.40';
    for (let i = 0; i < BUDGET; i++) {
      await request(listener.t.publicApp)
        .post('/callbacks/native')
        .set('X-Forwarded-For', ip)
        .send(nativeFields())
        .expect(401);
    }
    await forgedNative(ip).expect(429);
  });

  test('When forged callbacks are refused 429, then rate_limited_total counts them under limiter public_auth_failures', async () => {
    const before = await limitedCount('public_auth_failures');
    const publicBefore = await limitedCount('public');
    await exhaust('198.51.100.50');
    await forgedNative('198.51.100.50').expect(429);
    await forgedNative('198.51.100.50').expect(429);
    expect(await limitedCount('public_auth_failures')).toBe(before + 2);
    expect(await limitedCount('public')).toBe(publicBefore);
  });
});

describe('the budget’s memory is bounded', () => {
  test('When refusals come from a spray of addresses, then at most maxClients are tracked', async () => {
    const budget = publicAuthFailureBudget({
      perMinute: 1,
      logger: createLogger('silent'),
      maxClients: 10,
    });
    const app = express();
    app.set('trust proxy', true);
    app.post('/', (req) => {
      const refusal = budget.refusal(req);
      if (refusal) throw refusal;
      budget.refused(req);
      throw new Error('refused');
    });
    app.use(errorHandler(createLogger('silent')));
    for (let i = 0; i < 50; i++) {
      await request(app).post('/').set('X-Forwarded-For', `10.2.0.${i}`).expect(500);
      expect(budget.trackedClients()).toBeLessThanOrEqual(10);
    }
    await request(app).post('/').set('X-Forwarded-For', '10.2.0.49').expect(429);
  });

  test('When a spray of addresses authenticates, then at most maxClients of them are remembered as trusted', async () => {
    const budget = publicAuthFailureBudget({
      perMinute: 1,
      logger: createLogger('silent'),
      maxClients: 10,
    });
    const app = express();
    app.set('trust proxy', true);
    app.post('/', (req, res) => {
      budget.authenticated(req);
      res.end();
    });
    for (let i = 0; i < 50; i++) {
      await request(app).post('/').set('X-Forwarded-For', `10.3.0.${i}`).expect(200);
    }
    expect(budget.trackedClients()).toBe(10);
  });
});
