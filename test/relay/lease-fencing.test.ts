import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { claimDueJobs, recordOutcomes, releaseJobs } from '../../src/relay/relay.repository';
import type { AttemptOutcome, ClaimLimits } from '../../src/relay/relay.repository';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A replica whose database stalled (hung, not refused) past a relay's lease: another replica
 * claims the job, sends it and records it delivered. The first replica's outcome, written
 * late, must not undo that — a `pending` written over `delivered` sends the callback yet again,
 * and a late attempt's counts and errors would overwrite the one that happened last.
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(() => database.destroy());

const limits: ClaimLimits = { limit: 10, perHost: 10, caps: new Map() };

function outcome(
  job: { id: number; lease_until: Date | null },
  state: AttemptOutcome['state'],
): AttemptOutcome {
  return {
    id: job.id,
    lease: job.lease_until!,
    state,
    delayMs: state === 'pending' ? 60_000 : null,
    status: state === 'delivered' ? 200 : 503,
    error: state === 'delivered' ? null : 'HTTP 503',
    payload: { keep: true },
  };
}

test('When a replica records an attempt after its lease ran out and another replica claimed and delivered the job, then the late outcome is not written', async () => {
  const messageId = randomUUID();
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, payload)
    VALUES (${messageId}, 'https://app.example/hook', 'https://app.example', 'POST', '\\x00')`.execute(
    database.db,
  );
  const [first] = await claimDueJobs(database.db, limits, 60_000);
  expect(first).toBeDefined();
  // The first replica's lease runs out while its database is stalled.
  await sql`UPDATE relay_jobs SET lease_until = now() - interval '1 second'
    WHERE id = ${first!.id}`.execute(database.db);
  const [second] = await claimDueJobs(database.db, limits, 60_000);
  expect(second?.id).toBe(first!.id);
  await recordOutcomes(database.db, [outcome(second!, 'delivered')]);

  // The first replica's attempt (it failed) comes back now.
  await recordOutcomes(database.db, [outcome(first!, 'pending')]);

  const row = await database.db
    .selectFrom('relay_jobs')
    .select(['state', 'attempts', 'last_status', 'lease_until'])
    .where('id', '=', first!.id)
    .executeTakeFirstOrThrow();
  expect(row).toEqual({ state: 'delivered', attempts: 1, last_status: 200, lease_until: null });
});

test('When a replica records an attempt whose lease ran out but no one claimed the job since, then it is written', async () => {
  const messageId = randomUUID();
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, payload)
    VALUES (${messageId}, 'https://app.example/hook', 'https://app.example', 'POST', '\\x00')`.execute(
    database.db,
  );
  const claimed = await claimDueJobs(database.db, limits, 1);
  const job = claimed.find((j) => j.message_id === messageId)!;
  await new Promise((resolve) => setTimeout(resolve, 20)); // the 1 ms lease is over
  await recordOutcomes(database.db, [outcome(job, 'delivered')]);
  const row = await database.db
    .selectFrom('relay_jobs')
    .select(['state', 'attempts'])
    .where('id', '=', job.id)
    .executeTakeFirstOrThrow();
  expect(row).toEqual({ state: 'delivered', attempts: 1 });
});

test('When a replica gives back a job whose lease ran out and another replica claimed, then the other keeps it: no third claim meanwhile, and its delivery is recorded', async () => {
  const messageId = randomUUID();
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, payload)
    VALUES (${messageId}, 'https://app.example/hook', 'https://app.example', 'POST', '\\x00')`.execute(
    database.db,
  );
  const first = (await claimDueJobs(database.db, limits, 60_000)).find(
    (job) => job.message_id === messageId,
  )!;
  await sql`UPDATE relay_jobs SET lease_until = now() - interval '1 second'
    WHERE id = ${first.id}`.execute(database.db);
  const second = (await claimDueJobs(database.db, limits, 60_000)).find(
    (job) => job.message_id === messageId,
  )!;
  // The first replica, late, gives back the job it waited to send.
  await releaseJobs(database.db, [{ id: first.id, lease: first.lease_until! }]);

  const third = await claimDueJobs(database.db, limits, 60_000);
  expect(third.map((job) => job.id)).not.toContain(first.id);
  await recordOutcomes(database.db, [outcome(second, 'delivered')]);
  const row = await database.db
    .selectFrom('relay_jobs')
    .select(['state', 'attempts'])
    .where('id', '=', first.id)
    .executeTakeFirstOrThrow();
  expect(row).toEqual({ state: 'delivered', attempts: 1 });
});

test('When a replica gives back a job it still holds, then the job is free to claim at once', async () => {
  const messageId = randomUUID();
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, payload)
    VALUES (${messageId}, 'https://app.example/hook', 'https://app.example', 'POST', '\\x00')`.execute(
    database.db,
  );
  const job = (await claimDueJobs(database.db, limits, 60_000)).find(
    (j) => j.message_id === messageId,
  )!;
  await releaseJobs(database.db, [{ id: job.id, lease: job.lease_until! }]);
  const again = await claimDueJobs(database.db, limits, 60_000);
  expect(again.map((j) => j.id)).toContain(job.id);
});
