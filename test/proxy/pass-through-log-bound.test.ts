import request from 'supertest';
import { createInternalApp } from '../../src/app';
import { createLogger } from '../../src/logger';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * request-log.ts cuts a logged path to 256 characters so that a client does not decide how
 * much is written per request. The send proxy's pass-through refusals log the path at warn for
 * any caller that names an allowed project (its password is SignalWire's to check, and the
 * refusal comes first): cut the same way, or a 12 KB request line would become a 12 KB warn
 * line per request.
 */

const PROJECT = 'c3d4e5f6-a7b8-4901-8def-234567890abc';
const lines: string[] = [];
let t: TestApp;

beforeAll(async () => {
  t = await createTestApp({ SIGNALWIRE_PROJECT_IDS: PROJECT });
});
afterAll(() => t.close());

test('When a pass-through call is refused for its path, then the warn line holds a bounded part of it', async () => {
  const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
  const app = createInternalApp({ ...t.deps, logger });
  const path = `/api/messaging/%2e%2e/${'a'.repeat(12_000)}`;
  await request(app)
    .get(path)
    .set('Authorization', basicAuthHeader(PROJECT, 'not-checked-by-the-service'))
    .expect(404);
  await request(app)
    .post(`/api/laml/2010-04-01/Accounts/${PROJECT}/${'b'.repeat(12_000)}/Messages`)
    .set('Authorization', basicAuthHeader(PROJECT, 'not-checked-by-the-service'))
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send('To=%2B15550001111')
    .expect((res) => expect(res.status).toBeGreaterThanOrEqual(400));
  const warned = lines.filter((line) => (JSON.parse(line) as { level: number }).level === 40);
  expect(warned.length).toBeGreaterThan(0);
  for (const line of warned) expect(line.length).toBeLessThan(2_000);
});
