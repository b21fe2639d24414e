import { Client } from 'pg';
import request from 'supertest';
import { backendsWaitingOnLock } from '../helpers/lock-waits';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// The query API's read gate lets a quarter of DATABASE_POOL_MAX reads run at once, so that the
// callbacks' commits keep the rest of the pool. A stats request must hold no more connections
// than the turns it was given: it reads in two transactions (rollups; edges and stuck count).

let service: TestApp;
beforeAll(async () => {
  // DATABASE_POOL_MAX 8: two turns for the query API's reads.
  service = await createTestApp({ DATABASE_POOL_MAX: '8' });
});
afterAll(() => service.close());

test('When four stats requests arrive while their tables are locked, then no more connections than the gate’s two turns wait in the database, and every request is answered once the lock goes', async () => {
  const { database, internalApp } = service;
  const locker = new Client({ connectionString: database.url });
  await locker.connect();
  let pending: Array<Promise<request.Response>> = [];
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE messages, stats_deltas IN ACCESS EXCLUSIVE MODE');
    pending = Array.from({ length: 4 }, (_, i) =>
      request(internalApp)
        .get(`/v1/stats?api=${i % 2 === 0 ? 'cxml' : 'native'}`)
        .set('Authorization', `Bearer ${TEST_API_TOKEN}`)
        .then(),
    );
    for (let i = 0; i < 200 && (await backendsWaitingOnLock(database.url)) < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    // Time for every other read to reach the database, if the gate let it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await backendsWaitingOnLock(database.url)).toBeLessThanOrEqual(2);
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
  const answers = await Promise.all(pending);
  expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 200]);
});
