import { sql } from 'kysely';
import { recordEvents } from '../../src/messages/record-events';
import type { LookupResult, LookupTarget } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { sentMessage, startTestSweep } from './support';

/**
 * A lookup SignalWire failed (503) is put off with a lease until its retry (postpone). A new
 * event then restarts the message's schedule but leaves the lease: the write path must not
 * clear a lease a replica may be using. The next claim took that lease for the postponement of
 * a lookup at the same step, so the message's first transient failure at its new step 0 was
 * taken for its own repeated failure (reconcile-worker.ts, ownFailure) and counted as its step.
 * A postponement before the message's last event is no retry of its current step.
 */

const PROJECT = 'p-new-event';
let database: TestDatabase;
let sweep: ReconcileWorker | undefined;
let looked: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});

afterEach(async () => {
  await sweep?.stop();
  sweep = undefined;
  looked = [];
});

afterAll(() => database.destroy());

const state = (id: string) =>
  sql<{ sweep_step: number; stuck: boolean; sweep_error: string | null; leased: boolean }>`
    SELECT sweep_step, stuck, sweep_error, sweep_lease_until > now() AS leased
    FROM messages WHERE id = ${id}`
    .execute(database.db)
    .then((result) => result.rows[0]!);

/** A sweep whose lookups of `failing` SignalWire answers 503; the others, `sent`. */
function startSweep(failing: string): ReconcileWorker {
  return startTestSweep({
    db: database.db,
    lookup: {
      lookup(target: LookupTarget): Promise<LookupResult> {
        looked.push(target.id);
        return Promise.resolve(
          target.id === failing
            ? { kind: 'failed', error: 'HTTP 503', unavailable: true }
            : { kind: 'found', answer: { status: 'sent' } },
        );
      },
    },
    projects: [PROJECT],
    // Long enough that the test sees the first step only.
    schedule: [50, 600_000],
  });
}

test('When a message’s lookup was put off (503) and a new event came, then its next 503 at step 0 is put off again, not counted as its step', async () => {
  const id = await sentMessage(database.db, { projectId: PROJECT });
  sweep = startSweep(id);
  await eventually(async () => (await state(id)).sweep_error === 'HTTP 503', 20_000);
  await sweep.stop();
  expect(await state(id)).toEqual({
    sweep_step: 0,
    stuck: false,
    sweep_error: 'HTTP 503',
    leased: true,
  });

  // The retry's time come (as if its wait had passed), and a new event, which leaves the lease.
  await sql`UPDATE messages SET sweep_lease_until = now() - interval '1 second'
    WHERE id = ${id}`.execute(database.db);
  await recordEvents(database.db, [
    statusEvent('sent', { messageId: id, projectId: PROJECT, providerTimestamp: new Date() }),
  ]);
  // Another message, looked up first and answered: this replica's SignalWire answers.
  const other = await sentMessage(database.db, { projectId: PROJECT });
  await new Promise((resolve) => setTimeout(resolve, 100)); // the new event due for step 0
  looked = [];
  sweep = startSweep(id);
  await eventually(() => looked.length >= 2, 20_000);
  await sweep.stop();
  expect(looked).toEqual([other, id]);
  // Put off again, at step 0: SignalWire's failure, not the message's.
  expect(await state(id)).toEqual({
    sweep_step: 0,
    stuck: false,
    sweep_error: 'HTTP 503',
    leased: true,
  });
});
