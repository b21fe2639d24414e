import request from 'supertest';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * `limit` and `wait` are numbers written in decimal, as the document's `integer`/`number`
 * says: not whatever JavaScript's Number() makes of them (a blank is 0, `0x10` is 16).
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (url: string) =>
  request(t.internalApp).get(url).set('Authorization', `Bearer ${TEST_API_TOKEN}`);

describe('numbers in the query string', () => {
  test('When limit or wait is blank, hexadecimal, in exponent form or padded, then it is a 400 naming it', async () => {
    for (const url of [
      '/v1/events?wait=',
      '/v1/events?wait=0x1',
      '/v1/events?wait=1e0',
      '/v1/events?limit=0x10',
      '/v1/events?limit=1e2',
      '/v1/messages?limit=1e2',
      '/v1/messages?limit=%2010',
      '/v1/messages?limit=10.0',
      '/v1/relays?limit=0x10',
      '/v1/relays?limit=',
    ]) {
      const res = await get(url);
      const name = url.includes('wait') ? 'wait' : 'limit';
      expect([url, res.status]).toEqual([url, 400]);
      expect(res.body.error.details).toEqual([expect.objectContaining({ path: name })]);
    }
  });

  test('When limit and wait are written in decimal, then they are read as written', async () => {
    const res = await get('/v1/events?after=now&wait=0.05&limit=7').expect(200);
    expect(res.body.data).toEqual([]);
    await get('/v1/events?limit=1000').expect(200);
    await get('/v1/messages?limit=500').expect(200);
    await get('/v1/relays?limit=1').expect(200);
    await get('/v1/events?limit=1001').expect(400);
    await get('/v1/events?wait=30.5').expect(400);
  });
});
