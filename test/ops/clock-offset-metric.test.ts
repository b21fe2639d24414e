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

test('When the replica and the database share a clock, then the offset is about zero', async () => {
  expect(Math.abs((await offset())!)).toBeLessThan(0.5);
});

test('When the replica’s clock runs 30 s ahead of the database’s, then the offset says so', async () => {
  const realNow = Date.now.bind(Date);
  jest.spyOn(Date, 'now').mockImplementation(() => realNow() + 30_000);
  const ahead = (await offset())!;
  expect(ahead).toBeGreaterThan(29.5);
  expect(ahead).toBeLessThan(30.5);
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
