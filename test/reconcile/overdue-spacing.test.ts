import type { LookupResult } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { sentMessage, startTestSweep } from './support';

/**
 * A message whose last event is older than several steps of RECONCILE_SCHEDULE (the sweep was
 * off, or its project's credentials were added later) is due again right after each lookup:
 * its last event is old enough for the next step too. It spent all its lookups within seconds
 * and was stuck before SignalWire had the schedule's time to learn its fate. After a lookup,
 * the next step also waits the gap between the two steps.
 */

const PROJECT = 'p-overdue';
// A gap of 1.5 s between the two steps.
const SCHEDULE = [50, 1_550];
let database: TestDatabase;
let sweep: ReconcileWorker | undefined;

beforeAll(async () => {
  database = await createTestDatabase();
});

afterEach(async () => {
  await sweep?.stop();
  sweep = undefined;
});

afterAll(() => database.destroy());

test('When a message’s last event is older than every step, then its next lookup waits the gap between the steps after the last one', async () => {
  // A day old: overdue for both steps.
  const id = await sentMessage(database.db, { projectId: PROJECT, ageMs: 86_400_000 });
  const lookups: number[] = [];
  sweep = startTestSweep({
    db: database.db,
    lookup: {
      lookup(): Promise<LookupResult> {
        lookups.push(Date.now());
        return Promise.resolve({ kind: 'found', answer: { status: 'sent' } });
      },
    },
    projects: [PROJECT],
    schedule: SCHEDULE,
  });
  const stuck = await eventually(async () => {
    const row = await database.db
      .selectFrom('messages')
      .select(['stuck', 'sweep_step'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    return row.stuck && row;
  }, 8_000);
  expect(stuck).toEqual({ stuck: true, sweep_step: 2 });
  expect(lookups).toHaveLength(2);
  // The first at once (overdue); the second no sooner than 1.5 s after it, where it came with
  // the next poll (20 ms).
  expect(lookups[1]! - lookups[0]!).toBeGreaterThanOrEqual(1_450);
});
