import request from 'supertest';
import { MAX_FORWARDED_HOPS } from '../../src/http/forwarded-for';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * With TRUST_PROXY a list of subnets, Express walks X-Forwarded-For from the right while each
 * address is inside them, parsing every one against each subnet: 1,200 addresses a client
 * wrote inside them cost the public listener ~85 ms of event loop per request, before its
 * credentials were looked at. Only the hops nearest the service are looked at.
 */

let t: TestApp;
let trustChecks = 0;
beforeAll(async () => {
  t = await createTestApp({
    TRUST_PROXY: '10.0.0.0/8,192.168.0.0/16,127.0.0.0/8',
    RATE_LIMIT_PUBLIC_PER_MINUTE: '2',
  });
  // Counts the addresses Express asks TRUST_PROXY about (the work the stall was made of).
  const trust = t.publicApp.get('trust proxy fn') as (address: string, hop: number) => boolean;
  t.publicApp.set('trust proxy fn', (address: string, hop: number) => {
    trustChecks++;
    return trust(address, hop);
  });
});
beforeEach(() => {
  trustChecks = 0;
});
afterAll(() => t.close());

const chain = (addresses: number) =>
  Array.from({ length: addresses }, (_, i) => `10.${i % 250}.${(i >> 8) % 250}.1`).join(', ');

test('When X-Forwarded-For holds 1,200 addresses inside TRUST_PROXY, then at most the nearest hops are looked at', async () => {
  const res = await request(t.publicApp)
    .post('/callbacks/cxml')
    .set('X-Forwarded-For', chain(1_200))
    .type('form')
    .send('MessageSid=x');
  expect(res.status).toBe(401);
  expect(trustChecks).toBeGreaterThan(0);
  expect(trustChecks).toBeLessThanOrEqual(MAX_FORWARDED_HOPS);
});

test('When real proxies forward a client, then the client is still the one the rate limit counts', async () => {
  // The client, then two proxies (and supertest's loopback connection), all trusted but it.
  const forwarded = '198.51.100.7, 10.1.2.3, 192.168.1.1';
  for (let i = 0; i < 2; i++) {
    await request(t.publicApp).get('/nothing').set('X-Forwarded-For', forwarded).expect(404);
  }
  await request(t.publicApp).get('/nothing').set('X-Forwarded-For', forwarded).expect(429);
  await request(t.publicApp)
    .get('/nothing')
    .set('X-Forwarded-For', '198.51.100.8, 10.1.2.3')
    .expect(404);
});
