import type { Express } from 'express';
import { createPublicApp } from '../../src/app';
import { LOG_LINES_PER_MINUTE } from '../../src/http/log-budget';
import { createLogger } from '../../src/logger';
import { nativeFields, postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * An anonymous client decides how many requests it sends, not how many lines the service
 * writes: forged callbacks from many addresses, or one address's 429s, write so many lines a
 * minute of each kind (src/http/log-budget.ts), the rest counted in one line at the minute's
 * end. The first of each kind still tell the whole story (a refusal's candidate URLs, for a
 * PUBLIC_BASE_URL mismatch); the metrics count every request.
 */

interface Line {
  level: number;
  msg: string;
  status?: number;
  reason?: string;
  candidate_urls?: string[];
}

const lines: Line[] = [];
let t: TestApp;
let publicApp: Express;

beforeAll(async () => {
  t = await createTestApp({
    TRUST_PROXY: 'loopback',
    RATE_LIMIT_PUBLIC_AUTH_FAILURES_PER_MINUTE: '5',
  });
  const logger = createLogger('info', {
    write: (line: string) => void lines.push(JSON.parse(line) as Line),
  });
  publicApp = createPublicApp({ ...t.deps, logger });
});
afterAll(() => t.close());

function forged(address: string) {
  return postNative(publicApp, nativeFields(), { key: 'PSK_not_the_key' }).set(
    'X-Forwarded-For',
    address,
  );
}

test('When 200 forged callbacks come from 200 addresses, then at most so many "callback refused" and request lines a minute are written, each of the first with its candidate URLs', async () => {
  lines.length = 0;
  for (let i = 0; i < 200; i += 1) {
    const res = await forged(`198.51.100.${i + 1}`);
    expect(res.status).toBe(403);
  }
  const refused = lines.filter((line) => line.msg === 'callback refused');
  const requests = lines.filter((line) => line.msg === 'request');
  expect(refused).toHaveLength(LOG_LINES_PER_MINUTE);
  expect(requests).toHaveLength(LOG_LINES_PER_MINUTE);
  expect(refused[0]).toMatchObject({ reason: 'mismatch' });
  expect(refused[0]!.candidate_urls!.length).toBeGreaterThan(0);
});

test('When one address is refused 429 a thousand times, then its 429s write so many lines a minute, not one each', async () => {
  lines.length = 0;
  const address = '203.0.113.7';
  let refused = 0;
  for (let i = 0; i < 1000; i += 1) {
    const res = await forged(address);
    if (res.status === 429) refused += 1;
  }
  expect(refused).toBeGreaterThan(990);
  const logged429 = lines.filter((line) => line.msg === 'request' && line.status === 429);
  expect(logged429).toHaveLength(LOG_LINES_PER_MINUTE);
});
