import type { LookupResult, LookupTarget } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { sentMessage, startTestSweep } from './support';

/**
 * A message whose lookup SignalWire always fails (500, no answer in time) while it answers the
 * others was tried again at the same step for ever — never stuck, each failure also pausing the
 * replica's whole sweep. A failure of a message whose last lookup failed too, while this
 * replica's lookup before it was answered, is the message's own: it counts as its step. Only
 * a failure that was put off at the same step, though: an error a completed step left (a 404's)
 * does not make a message's first transient failure at its next step its own.
 */

const PROJECT = 'p-failing-message';
let database: TestDatabase;
let sweep: ReconcileWorker | undefined;
let looked: LookupTarget[] = [];

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
  database.db
    .selectFrom('messages')
    .select(['sweep_step', 'stuck', 'sweep_error'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

function startSweep(bad: string, retryAfterMs?: number): void {
  sweep = startTestSweep({
    db: database.db,
    lookup: {
      async lookup(target): Promise<LookupResult> {
        looked.push(target);
        return target.id === bad
          ? {
              kind: 'failed',
              error: 'HTTP 500',
              unavailable: true,
              ...(retryAfterMs !== undefined && { retryAfterMs }),
            }
          : { kind: 'found', answer: { id: target.id, status: 'sent', kind: 'sms' } };
      },
    },
    projects: [PROJECT],
    // Long enough that the test sees the first step only.
    schedule: [50, 600_000],
  });
}

test('When SignalWire fails a message’s lookup again while it answers the others, then the failure counts as its step and does not pause the sweep', async () => {
  // Looked up first, answered.
  const good = await sentMessage(database.db, { projectId: PROJECT, api: 'native', ageMs: 62_000 });
  const bad = await sentMessage(database.db, { projectId: PROJECT, api: 'native', ageMs: 61_000 });
  // Its last lookup failed already and was put off (postpone: the lease kept until the retry,
  // which is due now).
  await database.db
    .updateTable('messages')
    .set({ sweep_error: 'HTTP 500', sweep_lease_until: new Date(Date.now() - 1_000) })
    .where('id', '=', bad)
    .execute();
  const later = await sentMessage(database.db, {
    projectId: PROJECT,
    api: 'native',
    ageMs: 60_000,
  });
  // Its 500 says Retry-After: 60 (the lookup client passes it on for any failure): a pause of
  // the replica would hold the next lookup back a minute, not the first backoff's 1 s, so a
  // loaded machine cannot make "looked up at once" look like a pause, nor the other way round.
  startSweep(bad, 60_000);
  const after = await eventually(async () => {
    const s = await state(bad);
    return s.sweep_step === 1 && s;
  }, 20_000);
  expect(after).toEqual({ sweep_step: 1, stuck: false, sweep_error: 'HTTP 500' });
  // No pause of the replica: the message after it is looked up at once, well within the
  // minute a pause would last.
  await eventually(async () => (await state(later)).sweep_step === 1, 15_000);
  expect((await state(good)).sweep_step).toBe(1);
});

test('Control: when a message’s lookup fails the first time, then it keeps its step and is tried again later', async () => {
  const good = await sentMessage(database.db, { projectId: PROJECT, api: 'native', ageMs: 62_000 });
  const bad = await sentMessage(database.db, { projectId: PROJECT, api: 'native', ageMs: 61_000 });
  startSweep(bad);
  await eventually(async () => (await state(good)).sweep_step === 1, 20_000);
  await eventually(() => looked.some((t) => t.id === bad), 20_000);
  // The lookup is counted as it starts; what came of it is written after it (postpone, or
  // recordStep had it counted as the step): waited for, not a fixed pause a loaded machine
  // could outlast. Either write sets sweep_error; only a step would move sweep_step.
  const after = await eventually(async () => {
    const s = await state(bad);
    return s.sweep_error !== null && s;
  }, 20_000);
  expect(after).toEqual({ sweep_step: 0, stuck: false, sweep_error: 'HTTP 500' });
});

test('When a message whose previous step ended in a 404 meets its first transient 503, then it keeps its step (retried later), not stuck', async () => {
  const good = await sentMessage(database.db, { projectId: PROJECT, api: 'native', ageMs: 62_000 });
  const flaky = await sentMessage(database.db, {
    projectId: PROJECT,
    api: 'native',
    ageMs: 61_000,
  });
  // Step 0 was done: SignalWire answered 404 (recorded, counted as the step).
  await database.db
    .updateTable('messages')
    .set({ sweep_step: 1, sweep_error: 'not_found' })
    .where('id', '=', flaky)
    .execute();
  await database.db.updateTable('messages').set({ sweep_step: 1 }).where('id', '=', good).execute();
  let flakyLookups = 0;
  sweep = startTestSweep({
    db: database.db,
    lookup: {
      async lookup(target): Promise<LookupResult> {
        if (target.id === flaky && flakyLookups++ === 0) {
          // One transient failure; answered on any later try.
          return { kind: 'failed', error: 'HTTP 503', unavailable: true };
        }
        return { kind: 'found', answer: { id: target.id, status: 'sent', kind: 'sms' } };
      },
    },
    projects: [PROJECT],
    // Two steps: the 503 meets the flaky message at its last one.
    schedule: [50, 100],
  });
  await eventually(async () => (await state(good)).sweep_step === 2, 20_000);
  await eventually(() => flakyLookups >= 1, 20_000);
  // Its outcome is written after the lookup (postpone, or recordStep had it counted as the
  // step): waited for, not a fixed pause. Either write replaces the 404's sweep_error.
  const after = await eventually(async () => {
    const s = await state(flaky);
    return s.sweep_error !== 'not_found' && s;
  }, 20_000);
  expect(after).toEqual({ sweep_step: 1, stuck: false, sweep_error: 'HTTP 503' });
});
