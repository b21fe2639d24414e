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
