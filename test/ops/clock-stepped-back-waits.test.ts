import request from 'supertest';
import type { LookupResult } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { sentMessage, startTestSweep } from '../reconcile/support';

/**
 * The replica's wall clock stepped back (NTP `makestep`, a VM resumed, a hypervisor resync)
 * while the service waits: a change feed long-poll and the reconciliation sweep's pace, pauses
 * and statistics are timed on the monotonic clock, like the relay worker and the sweep's lease.
 * Timed on the wall clock, each waited for the step's length (an hour here).
 */

const HOUR = 3_600_000;
const realNow = Date.now.bind(Date);

/** From now on the wall clock reads `ms` less than it should (stepped back). */
function stepWallClockBack(ms: number): void {
  jest.spyOn(Date, 'now').mockImplementation(() => realNow() - ms);
}

/** Polls `check` on the monotonic clock (Date.now is mocked), up to `limitMs`. */
async function within(limitMs: number, check: () => boolean): Promise<boolean> {
  const deadline = performance.now() + limitMs;
  while (performance.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return check();
}

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterEach(() => jest.restoreAllMocks());
afterAll(() => t.close());

test('When the wall clock steps back an hour during a change-feed long-poll with wait=1, then it still answers after about a second, not an hour', async () => {
  const began = performance.now();
  const answered = request(t.internalApp)
    .get('/v1/events?after=now&wait=1')
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .then((res) => ({ status: res.status, ms: performance.now() - began }));
  let done: { status: number; ms: number } | undefined;
  void answered.then((value) => (done = value));
  await new Promise((resolve) => setTimeout(resolve, 300));
  stepWallClockBack(HOUR);
  expect(await within(6_000, () => done !== undefined)).toBe(true);
  expect(done!.status).toBe(200);
  jest.restoreAllMocks();
  // Let the request end (restoring the clock ends the wait) before the app closes.
  await answered;
});

describe('reconciliation', () => {
  let sweep: ReconcileWorker | undefined;
  afterEach(async () => {
    jest.restoreAllMocks();
    await sweep?.stop();
  });

  test('When the wall clock steps back an hour while the sweep runs, then the next due message is still looked up at once, not an hour later', async () => {
    const looked: string[] = [];
    const lookup = {
      async lookup(target: { id: string }): Promise<LookupResult> {
        looked.push(target.id);
        return { kind: 'found', answer: { id: target.id, status: 'sent', kind: 'sms' } };
      },
    };
    const first = await sentMessage(t.database.db, { projectId: 'p-step' });
    sweep = startTestSweep({
      db: t.database.db,
      lookup,
      projects: ['p-step'],
      schedule: [50, 600_000],
    });
    expect(await within(8_000, () => looked.includes(first))).toBe(true);
    stepWallClockBack(HOUR);
    // Due on the database's clock (its last event was received a minute before the step).
    const second = await sentMessage(t.database.db, { projectId: 'p-step', ageMs: 60_000 - HOUR });
    expect(await within(8_000, () => looked.includes(second))).toBe(true);
  });
});
