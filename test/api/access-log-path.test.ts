import request from 'supertest';
import type { Express } from 'express';
import { createInternalApp } from '../../src/app';
import { createLogger } from '../../src/logger';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { startUpstreamTap } from '../proxy/support';
import type { UpstreamTap } from '../proxy/support';

/**
 * The access log is the audit trail of the internal listener: a request answered inside a
 * router mounted on a prefix (the send proxy's pass-through, /v1's CORS preflight, /docs) is
 * logged with the path the caller asked for, not the part below the mount — Express strips the
 * prefix from req.url while the router answers.
 */

const PROJECT = 'c3d4e5f6-a7b8-4901-8def-234567890abc';
const AUTH = basicAuthHeader(PROJECT, 'PTsomeapitoken');
const lines: string[] = [];
let t: TestApp;
let tap: UpstreamTap;
let app: Express;

beforeAll(async () => {
  tap = await startUpstreamTap(() => ({
    status: 401,
    headers: { 'content-type': 'application/json' },
    body: '{"code":20003}',
  }));
  t = await createTestApp({
    SIGNALWIRE_SPACE_URL: tap.url,
    CORS_ORIGINS: 'https://dash.example.com',
  });
  const logger = createLogger('debug', { write: (line: string) => void lines.push(line) });
  app = createInternalApp({ ...t.deps, logger });
});
afterAll(async () => {
  await tap.close();
  await t.close();
});

function loggedPaths(): string[] {
  return lines
    .map((line) => JSON.parse(line) as { msg: string; path: string })
    .filter((entry) => entry.msg === 'request')
    .map((entry) => entry.path);
}

test('When calls are passed through to SignalWire, then the access log names the path the caller asked for', async () => {
  lines.length = 0;
  await request(app)
    .get(`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/SM123.json`)
    .set('Authorization', AUTH)
    .expect(401);
  await request(app)
    .delete(`/2010-04-01/Accounts/${PROJECT}/Messages/SM123.json`)
    .set('Authorization', AUTH)
    .expect(401);
  await request(app).get('/api/messaging/messages/abc').set('Authorization', AUTH).expect(401);
  expect(loggedPaths()).toEqual([
    `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/SM123.json`,
    `/2010-04-01/Accounts/${PROJECT}/Messages/SM123.json`,
    '/api/messaging/messages/abc',
  ]);
});

test('When a browser preflights the query API, then the access log names /v1/…', async () => {
  lines.length = 0;
  await request(app)
    .options('/v1/messages')
    .set('Origin', 'https://dash.example.com')
    .set('Access-Control-Request-Method', 'GET')
    .expect(204);
  expect(loggedPaths()).toEqual(['/v1/messages']);
});
