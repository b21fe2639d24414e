import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import express from 'express';
import request from 'supertest';
import { errorHandler } from '../../src/http/error-handler';
import { bearerTokenKey, publicRateLimit, queryRateLimit } from '../../src/http/rate-limit';
import { createLogger } from '../../src/logger';
import type { Logger } from '../../src/logger';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { sample, scrape } from './scrape';

const TOKEN_A = 'rate-limit-token-a-0123456789';
const TOKEN_B = 'rate-limit-token-b-0123456789';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    TRUST_PROXY: '1',
    RATE_LIMIT_PUBLIC_PER_MINUTE: '3',
    RATE_LIMIT_QUERY_PER_MINUTE: '2',
    API_TOKENS: `${TOKEN_A},${TOKEN_B}`,
  });
});
afterAll(() => t.close());

// Each test uses its own client address: the limiter's counters live as long as the app.
const callbackFrom = (ip: string) => postCxml(t.publicApp, cxmlFields()).set('X-Forwarded-For', ip);

describe('public listener: per client address', () => {
  test('When one client exceeds the limit, then it gets 429 in the error shape with Retry-After', async () => {
    for (let i = 0; i < 3; i++) await callbackFrom('203.0.113.10').expect(200);
    const res = await callbackFrom('203.0.113.10').set('X-Request-Id', 'limited-1').expect(429);
    expect(res.body).toEqual({
      error: { code: 'rate_limited', message: expect.any(String), request_id: 'limited-1' },
    });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(res.headers['ratelimit-policy']).toBeDefined();
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });

  test('When TRUST_PROXY is set, then the client is told apart by X-Forwarded-For (the real client behind the LB)', async () => {
    for (let i = 0; i < 3; i++) await callbackFrom('198.51.100.1').expect(200);
    await callbackFrom('198.51.100.1').expect(429);
    // Same socket address (supertest's 127.0.0.1), another client behind the load balancer.
    await callbackFrom('198.51.100.2').expect(200);
  });

  test('When the proxy chain is longer than TRUST_PROXY, then a spoofed left-most address is ignored', async () => {
    // TRUST_PROXY=1 trusts one hop: the address the load balancer appended is the client.
    for (let i = 0; i < 3; i++) {
      await callbackFrom(`10.9.9.${i}, 192.0.2.77`).expect(200);
    }
    await callbackFrom('10.9.9.200, 192.0.2.77').expect(429);
  });

  test('When a client is limited, then health probes still answer', async () => {
    for (let i = 0; i < 4; i++) await callbackFrom('203.0.113.20');
    await callbackFrom('203.0.113.20').expect(429);
    await request(t.publicApp).get('/healthz').set('X-Forwarded-For', '203.0.113.20').expect(200);
    await request(t.publicApp).get('/readyz').set('X-Forwarded-For', '203.0.113.20').expect(200);
  });

  test('When requests are refused, then they are counted per limiter, as an authenticated sender’s once its address sent a genuine callback', async () => {
    const counted = async (sender: string) =>
      sample(await scrape(t.internalApp), 'sw_status_rate_limited_total', {
        limiter: 'public',
        sender,
      }) ?? 0;
    const before = await counted('authenticated');
    const unverified = await counted('unverified');
    for (let i = 0; i < 3; i++) await callbackFrom('203.0.113.30').expect(200);
    await callbackFrom('203.0.113.30').expect(429);
    expect(await counted('authenticated')).toBe(before + 1);
    expect(await counted('unverified')).toBe(unverified);
  });
});

describe('query API: per bearer token', () => {
  const query = (token: string) =>
    request(t.internalApp).get('/v1/messages?limit=1').auth(token, { type: 'bearer' });

  test('When one token exceeds its limit, then it gets 429 while another token is still served', async () => {
    await query(TOKEN_A).expect(200);
    await query(TOKEN_A).expect(200);
    const res = await query(TOKEN_A).expect(429);
    expect(res.body.error.code).toBe('rate_limited');
    expect(res.headers['retry-after']).toBeDefined();
    await query(TOKEN_B).expect(200);
  });

  test('When a request has an invalid token, then it is refused 401 and does not use any budget', async () => {
    for (let i = 0; i < 5; i++) await query('not-a-token').expect(401);
    await query(TOKEN_B).expect(200);
    await query(TOKEN_B).expect(429);
  });

  test('When the limiter keys a request, then the key is a digest, never the token', () => {
    const key = bearerTokenKey({ headers: { authorization: `Bearer ${TOKEN_A}` } } as never);
    expect(key).not.toContain(TOKEN_A);
    expect(key).toMatch(/^token:[A-Za-z0-9_-]{43}$/);
    expect(bearerTokenKey({ headers: { authorization: `bearer ${TOKEN_A}` } } as never)).toBe(key);
  });

  test('When /metrics and health are polled often, then they are not rate limited', async () => {
    for (let i = 0; i < 5; i++) {
      await request(t.internalApp).get('/metrics').expect(200);
      await request(t.internalApp).get('/healthz').expect(200);
    }
  });
});

describe('the limiter’s memory is bounded', () => {
  function sprayApp(maxClients: number) {
    const limiter = publicRateLimit({
      perMinute: 2,
      logger: createLogger('silent'),
      maxClients,
    });
    const app = express();
    app.set('trust proxy', true);
    app.use(limiter);
    app.get('/', (_req, res) => void res.end('ok'));
    app.use(errorHandler(createLogger('silent')));
    return { app, limiter };
  }
  const from = (app: express.Express, ip: string) =>
    request(app).get('/').set('X-Forwarded-For', ip);

  test('When an attacker sprays addresses, then the limiter tracks at most maxClients and keeps answering', async () => {
    const { app, limiter } = sprayApp(50);
    for (let i = 0; i < 250; i++) {
      await from(app, `10.0.${i >> 8}.${i & 255}`).expect(200);
      expect(limiter.trackedClients()).toBeLessThanOrEqual(50);
    }
    expect(limiter.trackedClients()).toBe(50);
  });

  test('When a minute has passed, then the next request forgets the clients whose window ended', async () => {
    const { app, limiter } = sprayApp(1_000);
    // Windows are timed on the monotonic clock (rate-limit-clock-step.test.ts).
    const clock = jest.spyOn(performance, 'now');
    try {
      const start = performance.now();
      clock.mockReturnValue(start);
      for (let i = 0; i < 20; i++) await from(app, `10.1.0.${i}`).expect(200);
      expect(limiter.trackedClients()).toBe(20);
      clock.mockReturnValue(start + 61_000);
      await from(app, '192.0.2.99').expect(200);
      expect(limiter.trackedClients()).toBe(1);
    } finally {
      clock.mockRestore();
    }
  });

  test('When a limiter is dropped, then nothing keeps it alive: no timer of its own outlives the app', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // Only the limiter holds this logger: collected with it.
    const held = ((): WeakRef<Logger> => {
      const logger = { warn: () => undefined } as unknown as Logger;
      publicRateLimit({ perMinute: 2, logger });
      return new WeakRef(logger);
    })();
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    expect(held.deref()).toBeUndefined();
  });

  test('When a limited client is among the tracked ones, then it stays limited; pushed out by a spray, it is forgotten', async () => {
    const { app } = sprayApp(10);
    await from(app, '192.0.2.1').expect(200);
    await from(app, '192.0.2.1').expect(200);
    await from(app, '192.0.2.1').expect(429);
    for (let i = 0; i < 9; i++) await from(app, `198.51.100.${i}`).expect(200);
    await from(app, '192.0.2.1').expect(429);
    // The trade-off, documented: past the bound the oldest counts are forgotten rather than
    // memory growing or new clients (SignalWire) being refused.
    await from(app, '198.51.100.200').expect(200);
    await from(app, '192.0.2.1').expect(200);
  });

  test('When a request passes, then the limiter decides synchronously (it runs on every callback)', () => {
    const limiter = queryRateLimit({ perMinute: 5, logger: createLogger('silent') });
    const next = jest.fn();
    const res = { setHeader: jest.fn() };
    const returned: unknown = limiter(
      { headers: { authorization: 'Bearer x' } } as never,
      res as never,
      next,
    );
    expect(returned).toBeUndefined();
    expect(next).toHaveBeenCalledWith();
  });
});
