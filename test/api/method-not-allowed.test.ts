import request from 'supertest';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { openApiDocument } from '../helpers/openapi';

/**
 * The query API's paths asked with a method they do not take: 405 with `Allow`, in the
 * documented error shape — not a 404 that says the path is wrong when it is not.
 */
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

test.each([
  ['post', '/v1/events', 'GET, HEAD'],
  ['delete', '/v1/messages', 'GET, HEAD'],
  ['put', '/v1/messages/abc', 'GET, HEAD'],
  ['post', '/v1/stats', 'GET, HEAD'],
  ['patch', '/v1/relays', 'GET, HEAD'],
  ['get', '/v1/relays/12/retry', 'POST'],
] as const)('When %s %s is asked, then 405 with Allow: %s', async (method, path, allow) => {
  const res = await request(t.internalApp)[method](path).auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(res.status).toBe(405);
  expect(res.headers['allow']).toBe(allow);
  expect(res.body.error).toEqual({
    code: 'method_not_allowed',
    message: `${method.toUpperCase()} is not allowed on ${path}: it takes ${allow}`,
    request_id: expect.any(String),
  });
});

test('When any documented /v1 path is asked with a method it does not take, then 405 naming the ones it does', async () => {
  const asked: string[] = [];
  for (const [path, item] of Object.entries(openApiDocument().paths ?? {})) {
    if (!path.startsWith('/v1/')) continue;
    const url = path.replace(/\{[^}]+\}/g, '12');
    const taken = (['get', 'post', 'put', 'patch', 'delete'] as const).filter(
      (method) => item?.[method] !== undefined,
    );
    for (const method of (['get', 'post', 'put', 'patch', 'delete'] as const).filter(
      (method) => !taken.includes(method),
    )) {
      const res = await request(t.internalApp)[method](url).auth(TEST_API_TOKEN, {
        type: 'bearer',
      });
      expect([`${method} ${url}`, res.status]).toEqual([`${method} ${url}`, 405]);
      expect(res.headers['allow']!.split(', ')).toEqual(
        expect.arrayContaining(taken.map((m) => m.toUpperCase())),
      );
      asked.push(`${method} ${url}`);
    }
  }
  // Every query API path is in the document: the messages, the feed, the stats, the relays.
  expect(asked.length).toBeGreaterThanOrEqual(6 * 4);
});

test('When the method is wrong and no token is given, then 401 first: nothing is said without one', async () => {
  expect((await request(t.internalApp).post('/v1/events')).status).toBe(401);
});

test('When the method is right, then the route answers as before', async () => {
  const res = await request(t.internalApp)
    .get('/v1/events?after=now')
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(res.status).toBe(200);
});

test('When a path is unknown, then it is still a 404', async () => {
  const res = await request(t.internalApp)
    .post('/v1/nothing')
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(res.status).toBe(404);
});
