import { randomUUID } from 'node:crypto';
import express from 'express';
import { Client } from 'pg';
import request from 'supertest';
import { errorHandler } from '../../src/http/error-handler';
import { requestId } from '../../src/http/request-id';
import { createLogger } from '../../src/logger';
import { messageRoutes } from '../../src/messages/messages.routes';
import { relayRoutes } from '../../src/relay/relays.routes';
import { statsRoutes } from '../../src/stats/stats.routes';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

// The pool carries no statement timeout (the write path's COMMITs must never be cut short),
// and without DATABASE_READ_URL the query API reads on the very pool the callbacks commit on.
// A read that runs long — a list the indexes serve badly, or one waiting on a lock — must give
// its connection back, not hold it for as long as it runs.
//
// Here the reads are held by a lock another session keeps (an operator's ALTER TABLE, say)
// until the answer arrives: a read without a timeout never answers while it is held.

const READ_TIMEOUT_MS = 300;
let database: TestDatabase;
let app: express.Express;

beforeAll(async () => {
  // One connection: the one the write path would need next.
  database = await createTestDatabase(1);
  app = express();
  app.use(requestId());
  app.use(messageRoutes({ db: database.db, readTimeoutMs: READ_TIMEOUT_MS }));
  app.use(statsRoutes({ db: database.db, readTimeoutMs: READ_TIMEOUT_MS }));
  app.use(relayRoutes({ db: database.db, readTimeoutMs: READ_TIMEOUT_MS }));
  app.use(errorHandler(createLogger('silent')));
});
afterAll(() => database.destroy());

/** Runs `body` while another session holds ACCESS EXCLUSIVE on `messages` and `relay_jobs`. */
async function whileMessagesLocked<T>(body: () => Promise<T>): Promise<T> {
  const locker = new Client({ connectionString: database.url });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE messages, relay_jobs IN ACCESS EXCLUSIVE MODE');
    return await body();
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
}

test.each([
  ['a list', '/v1/messages?status=failed,undelivered&order=created'],
  ['a message by id', `/v1/messages/${randomUUID()}`],
  ['the stats', '/v1/stats'],
  ['the relays', '/v1/relays?state=dead'],
])(
  'When %s cannot finish (a lock holds it), then it is cancelled and answered 503 query_timeout, and the pool connection comes back clean',
  async (_what, path) => {
    const res = await whileMessagesLocked(() => request(app).get(path));
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body.error).toMatchObject({
      code: 'query_timeout',
      request_id: expect.any(String),
    });
    // The timeout was the read's transaction's own (SET LOCAL): the pool's one connection,
    // which the write path takes next, carries none.
    const { rows } = await database.pool.query<{ statement_timeout: string }>(
      'SHOW statement_timeout',
    );
    expect(rows[0]!.statement_timeout).toBe('0');
    // And the read answers again once nothing holds it.
    expect((await request(app).get('/v1/messages?limit=1')).status).toBe(200);
  },
);
