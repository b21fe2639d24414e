import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { sample, scrape } from './scrape';

/**
 * sw_status_clock_offset_seconds (src/feed/feed-metrics.ts): replicas stamp callbacks with
 * their own clocks, which decide conflicts and measure latency; this gauge, and the
 * SwStatusClockSkew alert on it, say when a replica's clock is off the database's.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());
afterEach(() => jest.restoreAllMocks());

const offset = async () => sample(await scrape(t.internalApp), 'sw_status_clock_offset_seconds');

/**
 * The offset, and how long the scrape took (s): the replica reads its clock when the answer is
 * in, so the time the answer took to be read (a loaded machine's stall) adds to the offset.
 */
async function timedOffset(): Promise<{ seconds: number; took: number }> {
  const began = performance.now();
  const seconds = (await offset())!;
  return { seconds, took: (performance.now() - began) / 1000 };
}

test('When the replica and the database share a clock, then the offset is about zero', async () => {
  const { seconds, took } = await timedOffset();
  expect(seconds).toBeGreaterThan(-0.5);
  expect(seconds).toBeLessThan(0.5 + took);
});

test('When the replica’s clock runs 30 s ahead of the database’s, then the offset says so', async () => {
  const realNow = Date.now.bind(Date);
  jest.spyOn(Date, 'now').mockImplementation(() => realNow() + 30_000);
  const { seconds, took } = await timedOffset();
  expect(seconds).toBeGreaterThan(29.5);
  expect(seconds).toBeLessThan(30.5 + took);
});

test('When the database does not answer within the scrape’s wait, then the gauge keeps its last value and the scrape answers', async () => {
  const before = (await offset())!;
  const { pool } = t.database;
  // Every connection busy for longer than the gauge waits.
  const holders = await Promise.all(Array.from({ length: pool.options.max }, () => pool.connect()));
  try {
    const began = Date.now();
    expect(await offset()).toBe(before);
    expect(Date.now() - began).toBeLessThan(5_000);
  } finally {
    for (const client of holders) client.release();
  }
});
