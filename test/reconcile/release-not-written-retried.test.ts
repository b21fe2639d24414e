import { sql } from 'kysely';
import type { Client } from 'pg';
import { createLogger } from '../../src/logger';
import type { LookupResult } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { eventually } from '../helpers/eventually';
import { holdRowLock } from '../helpers/lock-waits';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { sentMessage, startTestSweep } from './support';

/**
 * release() gives up after SWEEP_WRITE_TIMEOUT_MS (3 s) on a row another session holds, and
 * leaves the claim's lease on the message (it used to wait for the row and clear the lease).
 * A lease left on a message read as a postponement's at its next claim (RETRIED,
 * reconcile.repository.ts), and ownFailure() (reconcile-worker.ts) then took one SignalWire 503
 * for the message's own failure and counted it as its step: at the last step the message was
 * made `stuck` after a single 503, although SignalWire never answered about it at that step.
 * Only a postponement's lease says the message's last lookup was put off.
 *
 * Path: project credentials refused on message A → the rest of the batch (B) is released; B's
 * row is held by another session at that moment → release fails, lease stays. Credentials work
 * again; at B's next claim SignalWire answers A and then one 503 for B.
 */

jest.setTimeout(30_000);

let database: TestDatabase;
let operator: Client | undefined;
let worker: ReconcileWorker | undefined;
beforeAll(async () => {
  database = await createTestDatabase(4);
});
afterEach(async () => {
  await worker?.stop({ waitMs: 1_000 });
  worker = undefined;
  await operator?.query('ROLLBACK').catch(() => undefined);
  await operator?.end().catch(() => undefined);
  operator = undefined;
});
afterAll(() => database.destroy());

const sweepState = (id: string) =>
  database.db
    .selectFrom('messages')
    .select(['stuck', 'sweep_step', 'sweep_error'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

/** B at its last step (one lookup done, 404 then), due for it. */
async function atLastStep(id: string): Promise<void> {
  await database.db
    .updateTable('messages')
    .set({
      sweep_step: 1,
      sweep_error: 'not_found',
      sweep_checked_at: new Date(Date.now() - 3_600_000),
    })
    .where('id', '=', id)
    .execute();
}

/**
 * The lease left on the message runs out (brought forward: it lasts minutes) — moved, not
 * replaced, so it stays whose it was.
 */
async function leaseRunsOut(id: string): Promise<void> {
  await sql`UPDATE messages SET sweep_lease_until = sweep_lease_until - interval '1 day'
    WHERE id = ${id}`.execute(database.db);
}

test('When a release the credentials pause made could not be written, then one 503 at the message’s last step does not make it stuck', async () => {
  const PROJECT = 'p-release-retried';
  const a = await sentMessage(database.db, { projectId: PROJECT, ageMs: 3 * 3_600_000 });
  const b = await sentMessage(database.db, { projectId: PROJECT, ageMs: 2 * 3_600_000 });
  await atLastStep(b);

  const lines: Array<{ msg: string }> = [];
  const calls: string[] = [];
  worker = startTestSweep({
    db: database.db,
    projects: [PROJECT],
    schedule: [50, 3_600_000],
    refusalPause: () => 200,
    logger: createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) }),
    lookup: {
      async lookup({ id }): Promise<LookupResult> {
        calls.push(id);
        if (id === a && calls.length === 1) {
          // The operator's session takes B's row while SignalWire refuses the credentials.
          operator = await holdRowLock(database.url, b);
          return { kind: 'unauthorized' };
        }
        if (id === a) return { kind: 'not_found' };
        return { kind: 'failed', error: 'HTTP 503', unavailable: true };
      },
    },
  });

  await eventually(
    async () => lines.some((line) => line.msg.startsWith('lookup not recorded')),
    'the release of B not written',
    10_000,
  );
  await operator!.query('ROLLBACK');
  await leaseRunsOut(b);
  await eventually(async () => calls.filter((id) => id === b).length >= 1, 'B looked up', 10_000);
  await eventually(
    async () => (await sweepState(b)).sweep_error === 'HTTP 503',
    'B’s 503 written',
    10_000,
  );
  await worker.stop();
  worker = undefined;

  // One 503 and no answer about B at this step: tried again, not stuck.
  expect(await sweepState(b)).toEqual({ stuck: false, sweep_step: 1, sweep_error: 'HTTP 503' });
});

test('Control: when a message’s lookup at its last step was put off (503) and fails again while SignalWire answers the others, then it counts as its step (stuck)', async () => {
  const PROJECT = 'p-postponed-retried';
  const b = await sentMessage(database.db, { projectId: PROJECT, ageMs: 2 * 3_600_000 });
  await atLastStep(b);
  const calls: string[] = [];
  const sweep = (): ReconcileWorker =>
    startTestSweep({
      db: database.db,
      projects: [PROJECT],
      schedule: [50, 3_600_000],
      lookup: {
        lookup({ id }): Promise<LookupResult> {
          calls.push(id);
          return Promise.resolve(
            id === b
              ? { kind: 'failed', error: 'HTTP 503', unavailable: true }
              : { kind: 'not_found' },
          );
        },
      },
    });

  // The first 503: put off, at the same step.
  worker = sweep();
  await eventually(
    async () => (await sweepState(b)).sweep_error === 'HTTP 503',
    'B put off',
    10_000,
  );
  await worker.stop();
  expect(await sweepState(b)).toEqual({ stuck: false, sweep_step: 1, sweep_error: 'HTTP 503' });

  // The retry's time come; another message answered first, then B fails again.
  await leaseRunsOut(b);
  const another = await sentMessage(database.db, { projectId: PROJECT, ageMs: 4 * 3_600_000 });
  calls.length = 0;
  worker = sweep();
  await eventually(async () => (await sweepState(b)).stuck, 'B stuck', 10_000);
  expect(calls.slice(0, 2)).toEqual([another, b]);
  expect(await sweepState(b)).toEqual({ stuck: true, sweep_step: 2, sweep_error: 'HTTP 503' });
});
