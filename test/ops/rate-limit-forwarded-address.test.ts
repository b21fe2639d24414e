import express from 'express';
import request from 'supertest';
import { errorHandler } from '../../src/http/error-handler';
import { publicRateLimit } from '../../src/http/rate-limit';
import { createLogger } from '../../src/logger';

/**
 * With TRUST_PROXY wider than the proxies really in front (`true`, or a hop count too high),
 * Express takes `req.ip` from what the client wrote in X-Forwarded-For, unchecked: any string,
 * up to the 16 KiB of headers Node accepts. The limiter keys must stay addresses.
 */
function appTrustingEverything() {
  const limiter = publicRateLimit({ perMinute: 3, logger: createLogger('silent') });
  const app = express();
  app.set('trust proxy', true);
  app.use(limiter);
  app.get('/', (_req, res) => void res.end('ok'));
  app.use(errorHandler(createLogger('silent')));
  return { app, limiter };
}

test('When a client writes X-Forwarded-For values that are no address, then they are keyed on the connection: no new 8 KiB key per request, no way around the limit', async () => {
  const { app, limiter } = appTrustingEverything();
  const junk = (i: number) => `${i}-${'x'.repeat(8_000)}`;
  for (let i = 0; i < 3; i++) {
    await request(app).get('/').set('X-Forwarded-For', junk(i)).expect(200);
  }
  await request(app).get('/').set('X-Forwarded-For', junk(3)).expect(429);
  expect(limiter.trackedClients()).toBe(1);
});

test('When X-Forwarded-For carries real addresses, then each is still its own client', async () => {
  const { app, limiter } = appTrustingEverything();
  for (let i = 0; i < 3; i++) {
    await request(app).get('/').set('X-Forwarded-For', '192.0.2.10').expect(200);
  }
  await request(app).get('/').set('X-Forwarded-For', '192.0.2.10').expect(429);
  await request(app).get('/').set('X-Forwarded-For', '2001:db8:1::5').expect(200);
  await request(app).get('/').set('X-Forwarded-For', '192.0.2.11').expect(200);
  expect(limiter.trackedClients()).toBe(3);
});
