import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Client } from 'pg';
import {
  claimDueJobs,
  recordOutcomes,
  releaseJobs,
  RELAY_WRITE_TIMEOUT_MS,
} from '../../src/relay/relay.repository';
import type { AttemptOutcome, ClaimLimits, RelayJobRow } from '../../src/relay/relay.repository';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * recordOutcomes writes every outcome the worker's group commit gathered (up to
 * RELAY_CONCURRENCY) in one statement, bounded by RELAY_WRITE_TIMEOUT_MS. One job row held by
 * another session (an operator's SELECT … FOR UPDATE, a long transaction) made the whole batch
 * wait and then fail: every other outcome in it — relays already delivered to their apps —
 * stayed pending and leased, and was sent again once its lease ran out. Only the held job may
 * be left to its lease.
 */

jest.setTimeout(60_000);

let database: TestDatabase;
let operator: Client | undefined;
beforeAll(async () => {
  database = await createTestDatabase(4);
});
afterEach(async () => {
  await operator?.query('ROLLBACK').catch(() => undefined);
  await operator?.end().catch(() => undefined);
  operator = undefined;
  await sql`DELETE FROM relay_jobs`.execute(database.db);
});
afterAll(() => database.destroy());

const limits: ClaimLimits = { limit: 100, perHost: 100, caps: new Map() };

async function newJob(): Promise<void> {
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, payload)
    VALUES (${randomUUID()}, 'https://app.example/hook', 'https://app.example', 'POST', '\\x00')`.execute(
    database.db,
  );
}

/** Ten jobs claimed by this replica, the sixth's row held by an operator's session. */
async function claimedWithOneHeld(): Promise<{ jobs: RelayJobRow[]; held: RelayJobRow }> {
  for (let i = 0; i < 10; i++) await newJob();
  const jobs = await claimDueJobs(database.db, limits, 600_000);
  expect(jobs).toHaveLength(10);
  const held = jobs[5]!;
  operator = new Client({ connectionString: database.url });
  operator.on('error', () => undefined);
  await operator.connect();
  await operator.query('BEGIN');
  await operator.query('SELECT 1 FROM relay_jobs WHERE id = $1 FOR UPDATE', [held.id]);
  return { jobs, held };
}

function delivered(job: RelayJobRow): AttemptOutcome {
  return {
    id: job.id,
    lease: job.lease_until!,
    state: 'delivered',
    attempted: true,
    delayMs: null,
    status: 200,
    error: null,
    payload: { keep: false, base64: null },
  };
}

async function states(ids: readonly number[]) {
  return database.db
    .selectFrom('relay_jobs')
    .select(['id', 'state', 'lease_until'])
    .where('id', 'in', [...ids])
    .orderBy('id')
    .execute();
}

test('When one job row of a batch is held by another session, then the other delivered relays of the batch are recorded at once (not sent again) and the held one keeps its lease', async () => {
  const { jobs, held } = await claimedWithOneHeld();

  // All ten were sent and answered 200; the worker writes their outcomes in one group commit.
  const began = performance.now();
  const notWritten = await recordOutcomes(database.db, jobs.map(delivered));
  const ms = performance.now() - began;
  await operator!.query('ROLLBACK');

  // No wait for the held row: the batch neither waits for it nor gives up on the others.
  expect(ms).toBeLessThan(RELAY_WRITE_TIMEOUT_MS / 2);
  expect([...notWritten]).toEqual([held.id]);
  const rows = await states(jobs.map((job) => job.id));
  const others = rows.filter((row) => row.id !== held.id);
  // Nine relays whose rows nobody held were delivered: none of them may be sent again.
  expect(others.map((row) => row.state)).toEqual(Array(9).fill('delivered'));
  expect(others.every((row) => row.lease_until === null)).toBe(true);
  // The held one is left to its lease (sent again once it runs out: at least once).
  expect(rows.find((row) => row.id === held.id)).toMatchObject({
    state: 'pending',
    lease_until: held.lease_until,
  });
});

test('When one job row of a release is held by another session, then the other jobs are given back at once', async () => {
  const { jobs, held } = await claimedWithOneHeld();

  const began = performance.now();
  await releaseJobs(
    database.db,
    jobs.map((job) => ({ id: job.id, lease: job.lease_until! })),
  );
  const ms = performance.now() - began;
  await operator!.query('ROLLBACK');

  expect(ms).toBeLessThan(RELAY_WRITE_TIMEOUT_MS / 2);
  const rows = await states(jobs.map((job) => job.id));
  expect(rows.filter((row) => row.lease_until !== null).map((row) => row.id)).toEqual([held.id]);
});

test('When an outcome batch is large (500 outcomes with 2 kB payloads), then it is written well within the write timeout', async () => {
  for (let i = 0; i < 500; i++) await newJob();
  const jobs = await claimDueJobs(
    database.db,
    { limit: 500, perHost: 500, caps: new Map() },
    600_000,
  );
  const payload = Buffer.alloc(2048, 7).toString('base64');
  const outcomes = jobs.map((job) => ({
    ...delivered(job),
    state: 'dead' as const,
    payload: { keep: false as const, base64: payload },
  }));
  const began = performance.now();
  const notWritten = await recordOutcomes(database.db, outcomes);
  const ms = performance.now() - began;
  expect(notWritten.size).toBe(0);
  expect(ms).toBeLessThan(RELAY_WRITE_TIMEOUT_MS);
  const dead = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM relay_jobs WHERE state = 'dead' AND lease_until IS NULL`.execute(
    database.db,
  );
  expect(dead.rows[0]!.n).toBe(500);
});
