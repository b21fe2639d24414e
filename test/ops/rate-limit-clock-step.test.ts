import request from 'supertest';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * The replica's wall clock stepped back (NTP `makestep`, a VM resumed, a hypervisor resync)
 * while a rate window runs: windows are timed on the monotonic clock, so the step changes
 * nothing. On the wall clock, the window's end stayed an hour ahead: Retry-After 3660, and
 * SignalWire's address refused for that hour (callbacks dropped after its tries).
 */

const HOUR = 3_600_000;
const realNow = Date.now.bind(Date);

/** From now on the wall clock reads `ms` less than it should (stepped back). */
function stepWallClockBack(ms: number): void {
  jest.spyOn(Date, 'now').mockImplementation(() => realNow() - ms);
}

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    RATE_LIMIT_PUBLIC_PER_MINUTE: '2',
    RATE_LIMIT_QUERY_PER_MINUTE: '2',
    TRUST_PROXY: '1',
  });
});
afterEach(() => jest.restoreAllMocks());
afterAll(() => t.close());

test('When the wall clock steps back an hour during a rate window, then a limited callback sender is still told to retry within the one-minute window, not an hour', async () => {
  const from = (ip: string) => postCxml(t.publicApp, cxmlFields()).set('X-Forwarded-For', ip);
  await from('198.51.100.7').expect(200); // the window starts on the real clock
  stepWallClockBack(HOUR);
  await from('198.51.100.7').expect(200);
  const res = await from('198.51.100.7');
  expect(res.status).toBe(429);
  expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
});

test('When the wall clock steps back an hour, then the query API’s rate window still says it resets within a minute', async () => {
  const get = () =>
    request(t.internalApp).get('/v1/messages?limit=1').auth(TEST_API_TOKEN, { type: 'bearer' });
  await get().expect(200);
  stepWallClockBack(HOUR);
  const second = await get().expect(200);
  // RateLimit: "2-in-1min"; r=0; t=<seconds until reset>
  const reset = Number(/t=(\d+)/.exec(String(second.headers['ratelimit']))?.[1]);
  expect(reset).toBeLessThanOrEqual(60);
  const third = await get();
  expect(third.status).toBe(429);
  expect(Number(third.headers['retry-after'])).toBeLessThanOrEqual(60);
});
