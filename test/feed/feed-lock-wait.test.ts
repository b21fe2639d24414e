import { Client } from 'pg';
import request from 'supertest';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A feed page read waiting for a lock on status_events (a migration's ALTER TABLE, an
 * operator's LOCK TABLE) is cancelled by the server's statement timeout (feed.repository.ts,
 * read-timeout.ts readWithin), before the client's own bound gives up on its connection: a read
 * only the client gave up on stays in the lock queue (PostgreSQL does not see a closed socket
 * while its backend waits for a lock), while its turn goes to the next read on a new
 * connection — every few seconds another `concurrency` backends, without bound, taking the
 * primary's max_connections, which the callbacks' commits need.
 */
jest.setTimeout(120_000);

let database: TestDatabase;
let t: TestApp;
let locker: Client;
beforeAll(async () => {
  database = await createTestDatabase(1);
  // Feed concurrency: a quarter of 8 = 2.
  t = await createTestApp({ DATABASE_POOL_MAX: '8' }, { database });
  locker = new Client({ connectionString: database.url });
  await locker.connect();
});
afterAll(async () => {
  await locker.end().catch(() => undefined);
  await t.close().catch(() => undefined);
  await database.destroy();
});

const waitingOnLock = async (): Promise<number> => {
  const probe = new Client({ connectionString: database.url });
  await probe.connect();
  try {
    const { rows } = await probe.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock'
         AND query LIKE '%status_events%'`,
    );
    return Number(rows[0]!.n);
  } finally {
    await probe.end();
  }
};

test("When a lock on status_events is held, then feed page reads are answered 503 query_timeout and do not pile up in the primary's lock queue beyond the feed's concurrency", async () => {
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE status_events IN ACCESS EXCLUSIVE MODE');
  try {
    const statuses: Array<number | string> = [];
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        [0, 1].map(() =>
          request(t.internalApp)
            .get('/v1/events?limit=1&wait=0')
            .auth(TEST_API_TOKEN, { type: 'bearer' })
            .timeout({ response: 30_000 })
            .then(
              (res) => `${res.status} ${(res.body as { error?: { code?: string } }).error?.code}`,
              () => 'no answer',
            ),
        ),
      );
      statuses.push(...answers);
    }
    const waiting = await waitingOnLock();
    expect(statuses).toEqual(Array(6).fill('503 query_timeout'));
    // At most the feed's concurrency (2) of its reads may be waiting on the primary at once.
    expect(waiting).toBeLessThanOrEqual(2);
  } finally {
    await locker.query('ROLLBACK');
  }
});
