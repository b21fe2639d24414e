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

/** A due relay job of a message of its own; returns the message id. */
async function newJob(): Promise<string> {
  const messageId = randomUUID();
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, payload)
    VALUES (${messageId}, 'https://app.example/hook', 'https://app.example', 'POST', '\\x00')`.execute(
    database.db,
  );
  return messageId;
}

/** This replica's claim of the job of `messageId`. */
async function claim(messageId: string, leaseMs = 60_000) {
  const claimed = await claimDueJobs(database.db, limits, leaseMs);
  return claimed.find((job) => job.message_id === messageId);
}

function outcome(
  job: { id: number; lease_until: Date | null },
  state: AttemptOutcome['state'],
): AttemptOutcome {
  return {
    id: job.id,
    lease: job.lease_until!,
    state,
    attempted: true,
    delayMs: state === 'pending' ? 60_000 : null,
    status: state === 'delivered' ? 200 : 503,
    error: state === 'delivered' ? null : 'HTTP 503',
    payload: { keep: true },
  };
}

test('When a replica records an attempt after its lease ran out and another replica claimed and delivered the job, then the late outcome is not written', async () => {
  const messageId = await newJob();
  const first = await claim(messageId);
  expect(first).toBeDefined();
  // The first replica's lease runs out while its database is stalled.
  await sql`UPDATE relay_jobs SET lease_until = now() - interval '1 second'
    WHERE id = ${first!.id}`.execute(database.db);
  const second = await claim(messageId);
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
  const messageId = await newJob();
  const job = (await claim(messageId, 1))!;
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
  const messageId = await newJob();
  const first = (await claim(messageId))!;
  await sql`UPDATE relay_jobs SET lease_until = now() - interval '1 second'
    WHERE id = ${first.id}`.execute(database.db);
  const second = (await claim(messageId))!;
  // The first replica, late, gives back the job it waited to send.
  await releaseJobs(database.db, [{ id: first.id, lease: first.lease_until! }]);

  expect(await claim(messageId)).toBeUndefined();
  await recordOutcomes(database.db, [outcome(second, 'delivered')]);
  const row = await database.db
    .selectFrom('relay_jobs')
    .select(['state', 'attempts'])
    .where('id', '=', first.id)
    .executeTakeFirstOrThrow();
  expect(row).toEqual({ state: 'delivered', attempts: 1 });
});

test('When a replica gives back a job it still holds, then the job is free to claim at once', async () => {
  const messageId = await newJob();
  const job = (await claim(messageId))!;
  await releaseJobs(database.db, [{ id: job.id, lease: job.lease_until! }]);
  expect((await claim(messageId))?.id).toBe(job.id);
});
