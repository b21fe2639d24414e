import { randomUUID } from 'node:crypto';
import express from 'express';
import { Client } from 'pg';
import request from 'supertest';
import { createReadGate } from '../../src/db/read-gate';
import { errorHandler } from '../../src/http/error-handler';
import { requestId } from '../../src/http/request-id';
import { createLogger } from '../../src/logger';
import { messageRoutes } from '../../src/messages/messages.routes';
import { backendsWaitingOnLock } from '../helpers/lock-waits';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// Without DATABASE_READ_URL the query API reads on the pool the callbacks commit on. The
// statement timeout bounds how long one read holds a connection; this bounds how many do:
// dashboards asking more at once than the pool has connections must not take them all.
// Here the reads are held by a lock another session keeps (an operator's ALTER TABLE, say).

let service: TestApp;
beforeAll(async () => {
  // DATABASE_POOL_MAX 8: a quarter of it, 2, for the query API's reads. (The test database's
  // pool has 10 connections: without the gate, twelve reads would take every one of them.)
  service = await createTestApp({ DATABASE_POOL_MAX: '8' });
});
afterAll(() => service.close());

/** Runs `body` while another session holds ACCESS EXCLUSIVE on `tables`. */
async function whileLocked<T>(url: string, tables: string, body: () => Promise<T>): Promise<T> {
  const locker = new Client({ connectionString: url });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${tables} IN ACCESS EXCLUSIVE MODE`);
    return await body();
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
}

async function until(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 800 && !(await condition()); i++) {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

test('When dashboards ask for more reads at once than the pool has connections, then two hold a connection, the pool stays free for commits, and every read is answered once the lock goes', async () => {
  const { database, internalApp } = service;
  const paths = [
    ...Array.from({ length: 4 }, (_, i) => `/v1/messages?limit=${i + 1}`),
    ...Array.from({ length: 4 }, () => `/v1/messages/${randomUUID()}`),
    ...Array.from({ length: 4 }, (_, i) => `/v1/relays?limit=${i + 1}`),
  ];
  const { pending } = await whileLocked(database.url, 'messages, relay_jobs', async () => {
    const pending = paths.map((path) =>
      request(internalApp).get(path).set('Authorization', `Bearer ${TEST_API_TOKEN}`).then(),
    );
    await until(async () => (await backendsWaitingOnLock(database.url)) >= 2);
    // Every other request has reached the gate (not a pause "long enough" for them to reach
    // the database, which a loaded machine can outlast): ten wait their turn, none is still
    // on its way to the database. (Without the gate none would wait, and ten reads hold
    // connections in the database.)
    let metrics = '';
    await until(async () => {
      metrics = (await request(internalApp).get('/metrics').expect(200)).text;
      return /^sw_status_query_reads_waiting 10$/m.test(metrics);
    });
    expect(await backendsWaitingOnLock(database.url)).toBe(2);
    // Twelve reads asked of ten connections: none of the write path's work waits for the pool.
    expect(database.pool.waitingCount).toBe(0);
    const { rows } = await database.pool.query<{ one: number }>('SELECT 1 AS one');
    expect(rows[0]!.one).toBe(1);
    // And an operator sees it: two reads running, ten waiting their turn.
    expect(metrics).toMatch(/^sw_status_query_reads_running 2$/m);
    expect(metrics).toMatch(/^sw_status_query_reads_waiting 10$/m);
    // Not awaited here: the lock goes first.
    return { pending };
  });
  const answers = await Promise.all(pending);
  expect(answers.map((res) => res.status).sort()).toEqual(
    [
      ...Array.from({ length: 4 }, () => 200),
      ...Array.from({ length: 4 }, () => 200),
      ...Array.from({ length: 4 }, () => 404),
    ].sort(),
  );
});

test('When a read waits for its turn longer than the bound, then it is answered 503 unavailable with Retry-After, and the one holding the turn still answers', async () => {
  const { database } = service;
  const app = express();
  app.use(requestId());
  app.use(
    messageRoutes({
      db: database.db,
      readTimeoutMs: 10_000,
      reads: createReadGate({ concurrency: 1, maxWaitMs: 200 }),
    }),
  );
  app.use(errorHandler(createLogger('silent')));
  const [first, second] = await whileLocked(database.url, 'messages', async () => {
    const held = request(app).get('/v1/messages?limit=1').then();
    await until(async () => (await backendsWaitingOnLock(database.url)) >= 1);
    const refused = await request(app).get('/v1/messages?limit=2');
    return [held, refused] as const;
  });
  expect(second.status).toBe(503);
  expect(second.headers['retry-after']).toBe('1');
  expect(second.body.error).toMatchObject({ code: 'unavailable', request_id: expect.any(String) });
  expect((await first).status).toBe(200);
});
