import request from 'supertest';
import type { Express } from 'express';
import { createInternalApp, createPublicApp } from '../../src/app';
import { createLogger } from '../../src/logger';
import { createTestApp } from '../helpers/test-app';
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
