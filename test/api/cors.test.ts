import request from 'supertest';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

const DASHBOARD = 'https://dash.example.com';

describe('CORS_ORIGINS', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ CORS_ORIGINS: `${DASHBOARD}, http://localhost:3000` });
  });
  afterAll(() => t.close());

  test('When a listed origin preflights a query API call, then it is allowed without credentials', async () => {
    const res = await request(t.internalApp)
      .options('/v1/events')
      .set('Origin', DASHBOARD)
      .set('Access-Control-Request-Method', 'GET')
      .set('Access-Control-Request-Headers', 'authorization, if-none-match')
      .expect(204);
    expect(res.headers['access-control-allow-origin']).toBe(DASHBOARD);
    expect(res.headers['access-control-allow-headers']).toMatch(/Authorization/);
    expect(res.headers['access-control-allow-headers']).toMatch(/If-None-Match/);
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
  });

  test('When a listed origin calls the query API, then the answer may be read and its ETag seen', async () => {
    const res = await request(t.internalApp)
      .get('/v1/events?after=now')
      .set('Origin', DASHBOARD)
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(200);
    expect(res.headers['access-control-allow-origin']).toBe(DASHBOARD);
    expect(res.headers['access-control-expose-headers']).toMatch(/ETag/);
    expect(res.headers.vary).toMatch(/Origin/);
  });

  test('When a listed origin is rate limited or uses a wrong method, then the headers that say what to do are readable', async () => {
    const limited = await createTestApp({
      CORS_ORIGINS: DASHBOARD,
      RATE_LIMIT_QUERY_PER_MINUTE: '1',
    });
    try {
      const call = () =>
        request(limited.internalApp)
          .get('/v1/events?after=now')
          .set('Origin', DASHBOARD)
          .auth(TEST_API_TOKEN, { type: 'bearer' });
      const first = await call().expect(200);
      const exposed = (first.headers['access-control-expose-headers'] as string).split(',');
      // A browser script reads only the headers listed here (besides a few simple ones).
      for (const header of ['ETag', 'Retry-After', 'RateLimit', 'RateLimit-Policy', 'Allow']) {
        expect(exposed).toContain(header);
      }
      const second = await call().expect(429);
      expect(second.headers.ratelimit).toBeDefined();
      expect(second.headers['retry-after']).toBeDefined();
      const wrong = await request(limited.internalApp)
        .delete('/v1/events')
        .set('Origin', DASHBOARD)
        .auth(TEST_API_TOKEN, { type: 'bearer' });
      expect(wrong.headers['access-control-expose-headers']).toMatch(/Allow/);
    } finally {
      await limited.close();
    }
  });

  test('When another origin calls, or anything outside /v1 is called, then no CORS header is given', async () => {
    const other = await request(t.internalApp)
      .get('/v1/events?after=now')
      .set('Origin', 'https://evil.example.com')
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(200);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const metrics = await request(t.internalApp).get('/metrics').set('Origin', DASHBOARD);
    expect(metrics.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('without CORS_ORIGINS', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  test('When a browser preflights, then nothing allows it', async () => {
    const res = await request(t.internalApp)
      .options('/v1/events')
      .set('Origin', DASHBOARD)
      .set('Access-Control-Request-Method', 'GET');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });
});
