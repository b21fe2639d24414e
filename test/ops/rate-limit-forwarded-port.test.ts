import express from 'express';
import request from 'supertest';
import { errorHandler } from '../../src/http/error-handler';
import { publicRateLimit } from '../../src/http/rate-limit';
import { createLogger } from '../../src/logger';

/**
 * Some load balancers (Azure Application Gateway, some ingress set-ups) write the client's
 * address with its port in X-Forwarded-For: `192.0.2.10:50001`, `[2001:db8::5]:443`. That is
 * still the client: keyed on the address, not on the proxy's own connection (every client
 * behind it sharing one budget), nor on the port (a new key per connection).
 */
function appBehindProxy() {
  const limiter = publicRateLimit({ perMinute: 3, logger: createLogger('silent') });
  const app = express();
  app.set('trust proxy', 'loopback');
  app.use(limiter);
  app.get('/', (_req, res) => void res.end('ok'));
  app.use(errorHandler(createLogger('silent')));
  return { app, limiter };
}

test('When X-Forwarded-For carries address:port, then each address is its own client whatever its port', async () => {
  const { app, limiter } = appBehindProxy();
  for (let i = 0; i < 3; i++) {
    await request(app).get('/').set('X-Forwarded-For', `192.0.2.10:5000${i}`).expect(200);
  }
  await request(app).get('/').set('X-Forwarded-For', '192.0.2.10:50009').expect(429);
  await request(app).get('/').set('X-Forwarded-For', '192.0.2.11:50001').expect(200);
  await request(app).get('/').set('X-Forwarded-For', '[2001:db8:1::5]:443').expect(200);
  expect(limiter.trackedClients()).toBe(3);
});
