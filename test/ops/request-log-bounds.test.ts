import request from 'supertest';
import type { Express } from 'express';
import { createInternalApp, createPublicApp } from '../../src/app';
import { createLogger } from '../../src/logger';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Every refused request on the public listener is logged at info, 429s included: what an
 * anonymous client puts in its request line must not decide how much is written per request.
 */

const lines: string[] = [];
let t: TestApp;
let publicApp: Express;
let internalApp: Express;

beforeAll(async () => {
  t = await createTestApp();
  const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
  publicApp = createPublicApp({ ...t.deps, logger });
  internalApp = createInternalApp({ ...t.deps, logger });
});
afterAll(async () => {
  await t.close();
});

function requestLines(): Array<{ path: string; status: number }> {
  return lines
    .map((line) => JSON.parse(line) as { msg: string; path: string; status: number })
    .filter((entry) => entry.msg === 'request');
}

test('When an unknown path of 12 KB is requested, then its log line holds a bounded part of the path', async () => {
  lines.length = 0;
  const path = `/${'a'.repeat(12_000)}`;
  await request(publicApp).get(path).expect(404);
  await request(internalApp)
    .post(`/v1/${'b'.repeat(12_000)}`)
    .expect(401);

  const logged = requestLines();
  expect(logged.map((entry) => entry.status)).toEqual([404, 401]);
  for (const entry of logged) {
    expect(entry.path.length).toBeLessThanOrEqual(300);
    // Still recognisable: its beginning, and that it was cut.
    expect(entry.path).toMatch(/^\/(a+|v1\/b+)…$/);
  }
  expect(lines.join('').length).toBeLessThan(2_000);
});

test('When a callback path with a token is logged, then the token stays masked whatever the path length', async () => {
  lines.length = 0;
  await request(publicApp)
    .post(`/callbacks/native/${'t'.repeat(9_000)}`)
    .set('Content-Type', 'application/json')
    .send('{}')
    .expect(403);
  const [entry] = requestLines();
  expect(entry?.path).toBe('/callbacks/native/[token]');
});

test.each([
  ['a base URL written with a trailing slash', '/callbacks/native//SECRET-TOKEN'],
  ['the same on the cXML route', '/callbacks/cxml//SECRET-TOKEN/'],
  ['an encoded slash', '/callbacks/native%2FSECRET-TOKEN'],
  ['a dot segment', '/callbacks/native/x/../SECRET-TOKEN'],
  ['another case and a prefix', '//CallBacks/Native/SECRET-TOKEN'],
])(
  'When a callback path that is no route (%s) carries a token, then neither its 404 nor its log line says it',
  async (_what, path) => {
    lines.length = 0;
    const res = await request(publicApp).post(path).send('');
    expect(res.status).toBe(404);
    expect(res.text).not.toContain('SECRET-TOKEN');
    expect(res.text).toContain('[token]');
    expect(lines.join('\n')).not.toContain('SECRET-TOKEN');
    expect(requestLines().map((entry) => entry.status)).toEqual([404]);
  },
);

test('When a callback path holds no token, then it is logged as it came', async () => {
  lines.length = 0;
  await request(publicApp).put('/callbacks/native/').expect(404);
  await request(publicApp).put('/callbacks/cxml').expect(404);
  expect(requestLines().map((entry) => entry.path)).toEqual([
    '/callbacks/native/',
    '/callbacks/cxml',
  ]);
});

test('When a known path of 15 KB is asked with a method it does not take, then the 405 names a bounded part of it', async () => {
  const res = await request(t.internalApp)
    .delete(`/v1/messages/${'a'.repeat(15_000)}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(res.status).toBe(405);
  expect(res.body.error.message.length).toBeLessThan(400);
});
