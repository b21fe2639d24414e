import { sql } from 'kysely';
import { Client } from 'pg';
import request from 'supertest';
import { claimExpiredJobs, recordOutcomes } from '../../src/relay/relay.repository';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { backendsWaitingOnLock } from '../helpers/lock-waits';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { seedProxiedMessage } from './support';

/**
 * A retry of a pending relay a worker holds (an attempt, or its expiry) is refused with
 * 409 `being_attempted` and a Retry-After: the worker writes its outcome under its lease, and
 * a retry answered 200 meanwhile was silently undone — the relay dead with no request made
 * since (second diff review). Once the worker let go, the retry does what it says; a retry that
 * waited for the worker writing the relay dead revives it (one statement, re-checked after the
 * wait; first diff review). No relay worker runs here: it would attempt what a retry made due.
 */
jest.setTimeout(60_000);

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

test('When an operator retries a pending relay while its expiry holds it, then the retry is refused until the expiry is written, and then revives it', async () => {
  const url = 'http://app.example:8080/status';
  const host = 'http://app.example:8080';
  const id = await seedProxiedMessage(t.database.db, 'cxml', url);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'delivered' })).expect(
    200,
  );
  const job = await t.database.db
    .selectFrom('relay_jobs')
    .selectAll()
    .where('message_id', '=', id)
    .executeTakeFirstOrThrow();
  // Its host failed for two days, the job's schedule ran out: the expiry will make it dead.
  await sql`UPDATE relay_jobs SET attempts = 3, next_attempt_at = now() - interval '2 days'
    WHERE id = ${job.id}`.execute(t.database.db);
  await sql`INSERT INTO relay_hosts (host, failing_since, last_failure_at, last_error)
    VALUES (${host}, now() - interval '2 days', now(), 'HTTP 503')`.execute(t.database.db);

  const walk = await claimExpiredJobs(t.database.db, {
    host,
    after: null,
    limit: 10,
    windowMs: 60_000,
    remainingMs: [0],
    leaseMs: 30_000,
  });
  expect(walk.jobs.map((j) => Number(j.id))).toEqual([Number(job.id)]);
  const expired = walk.jobs[0]!;

  // The app is back: the operator retries it (the runbook) while the expiry holds it.
  const refused = await request(t.internalApp)
    .post(`/v1/relays/${job.id}/retry`)
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(409);
  expect(refused.body.error.code).toBe('being_attempted');
  expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);

  // The worker then writes the expiry's outcome, as relay-worker.ts expire() does.
  await recordOutcomes(t.database.db, [
    {
      id: Number(expired.id),
      lease: expired.lease_until!,
      state: 'dead',
      attempted: false,
      delayMs: null,
      status: expired.last_status,
      error: 'expired',
      payload: { keep: true },
    },
  ]);
  // Retried then, as the answer said: pending, due now, a fresh schedule.
  const retried = await request(t.internalApp)
    .post(`/v1/relays/${job.id}/retry`)
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  expect(retried.body).toMatchObject({ state: 'pending', attempts: 0 });
});

test('When the retry of a pending relay waits for the worker writing that relay dead, then the dead relay is retried, not called delivered', async () => {
  const { rows } = await sql<{ id: string }>`
    INSERT INTO relay_jobs (message_id, url, host, method, state, attempts, next_attempt_at)
    VALUES ('SM-racing-relay', 'https://app.example.com/cb', 'https://app.example.com:443', 'POST',
            'pending', 7, now() + interval '2 hours')
    RETURNING id`.execute(t.database.db);
  const id = rows[0]!.id;

  // The worker's outcome of the last attempt, in its transaction (recordOutcomes: state dead).
  const worker = new Client({ connectionString: t.database.url });
  worker.on('error', () => undefined);
  await worker.connect();
  await worker.query('BEGIN');
  await worker.query(
    `UPDATE relay_jobs SET state = 'dead', attempts = 8, updated_at = now() WHERE id = $1`,
    [id],
  );

  const retried = request(t.internalApp)
    .post(`/v1/relays/${id}/retry`)
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .then((res) => res);
  // The retry waits for the worker's row (two statements, one per state, missed it between them).
  const deadline = Date.now() + 10_000;
  while ((await backendsWaitingOnLock(t.database.url)) === 0) {
    if (Date.now() > deadline) throw new Error('the retry never waited for the row');
    await new Promise((r) => setTimeout(r, 20));
  }
  await worker.query('COMMIT');
  await worker.end();

  const res = await retried;
  const row = await t.database.db
    .selectFrom('relay_jobs')
    .select(['state'])
    .where('id', '=', Number(id))
    .executeTakeFirstOrThrow();
  // What the operator is told must match the row.
  expect({ status: res.status, code: res.body?.error?.code, state: row.state }).toEqual({
    status: 200,
    code: undefined,
    state: 'pending',
  });
});
