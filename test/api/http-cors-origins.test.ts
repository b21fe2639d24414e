import request from 'supertest';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

let t: TestApp;
beforeAll(async () => {
  // As an operator may write them: a capital letter (in the scheme too), the scheme's default
  // port.
  t = await createTestApp({
    CORS_ORIGINS: 'HTTPS://Dash.Example.com:443,Http://LocalHost:80,http://localhost:3000',
  });
});
afterAll(() => t.close());

test.each([['https://dash.example.com'], ['http://localhost'], ['http://localhost:3000']])(
  'When CORS_ORIGINS lists an origin in another spelling, then the browser origin %s is still allowed',
  async (origin) => {
    const preflight = await request(t.internalApp)
      .options('/v1/messages')
      .set('Origin', origin)
      .set('Access-Control-Request-Method', 'GET')
      .set('Access-Control-Request-Headers', 'authorization')
      .expect(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(origin);
    const res = await request(t.internalApp)
      .get('/v1/messages?limit=1')
      .set('Origin', origin)
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(200);
    expect(res.headers['access-control-allow-origin']).toBe(origin);
  },
);

test('When an origin differs by more than its spelling, then it is still refused', async () => {
  for (const origin of ['https://dash.example.com:8443', 'http://dash.example.com']) {
    const res = await request(t.internalApp)
      .get('/v1/messages?limit=1')
      .set('Origin', origin)
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  }
});
