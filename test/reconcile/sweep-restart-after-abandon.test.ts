import type { LookupResult } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { eventually } from '../helpers/eventually';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { sentMessage, startTestSweep } from './support';

/**
 * stop({ waitMs }) may return while the loop still runs (a lookup abandoned): `running` stays
 * set until that loop ends. start() returned at once while `running` was set, without clearing
 * `stopping`: a start() after a stop that gave up did nothing, the abandoned loop saw
 * `stopping` and ended, and no loop ran again (the sweep silently off, no log saying so).
 */

jest.setTimeout(30_000);

let database: TestDatabase;
let worker: ReconcileWorker | undefined;
beforeAll(async () => {
  database = await createTestDatabase(4);
});
afterEach(async () => {
  await worker?.stop({ waitMs: 1_000 });
  worker = undefined;
});
afterAll(() => database.destroy());

test('When the sweep is started again after a stop() that gave up on a lookup, then it looks messages up again once that lookup ends, one lookup at a time', async () => {
  const PROJECT = 'p-restart';
  const first = await sentMessage(database.db, { projectId: PROJECT });
  let looked!: () => void;
  const lookedUp = new Promise<void>((resolve) => (looked = resolve));
  let answer!: (result: LookupResult) => void;
  const seen: string[] = [];
  let open = 0;
  let mostOpen = 0;
  worker = startTestSweep({
    db: database.db,
    projects: [PROJECT],
    lookup: {
      async lookup({ id }): Promise<LookupResult> {
        seen.push(id);
        mostOpen = Math.max(mostOpen, ++open);
        try {
          if (id === first && seen.length === 1) {
            looked();
            return await new Promise((resolve) => (answer = resolve));
          }
          return { kind: 'not_found' };
        } finally {
          open--;
        }
      },
    },
  });
  await lookedUp;
  await worker.stop({ waitMs: 100 }); // gives up: the lookup is in flight
  worker.start(); // e.g. resumed
  answer({ kind: 'not_found' });

  const second = await sentMessage(database.db, { projectId: PROJECT });
  await eventually(async () => seen.includes(second), 'the second message looked up', 5_000);
  // Never two loops at once: one lookup at a time.
  expect(mostOpen).toBe(1);
});
