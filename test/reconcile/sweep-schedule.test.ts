import { sql } from 'kysely';
import { recordEvents } from '../../src/messages/record-events';
import type { LookupResult, LookupTarget } from '../../src/reconcile/lookup-client';
import { sweepStats } from '../../src/reconcile/reconcile.repository';
import type { ReconcileWorker, ReconcileWorkerOptions } from '../../src/reconcile/reconcile-worker';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { startTestSweep } from './support';

/**
 * The sweep's schedule and lease (DESIGN §11) against a real PostgreSQL: a message is looked
 * up at each step of RECONCILE_SCHEDULE and then stuck — also when an operator shortened the
 * schedule under it — and a replica's claim keeps other replicas off every message of its
 * batch for as long as the batch can take.
 */

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

/** Messages of `project` at `sent`, their last event a minute old: due for any short step. */
async function sentMessages(project: string, count: number): Promise<string[]> {
  const events = Array.from({ length: count }, () =>
    statusEvent('sent', { projectId: project, receivedAt: new Date(Date.now() - 60_000) }),
  );
  await recordEvents(database.db, events);
  return events.map((event) => event.messageId);
}

function startSweep(
  project: string,
  lookup: (target: LookupTarget) => Promise<LookupResult>,
  options: Partial<ReconcileWorkerOptions> = {},
): ReconcileWorker {
  return startTestSweep({
    db: database.db,
    lookup: { lookup },
    projects: [project],
    ...options,
  });
}

const sent = (): Promise<LookupResult> =>
  Promise.resolve({ kind: 'found', answer: { status: 'sent' } });

test('When RECONCILE_SCHEDULE was shortened under a message already past its new last step, then it is counted as due, looked up once more and stuck', async () => {
  const [id] = await sentMessages('p-shrink', 1);
  const before = await sweepStats(database.db, [50, 100], ['p-shrink']);
  // Two lookups done under the old four-step schedule; the new one has two steps.
  await sql`UPDATE messages SET sweep_step = 2 WHERE id = ${id}`.execute(database.db);
  expect(await sweepStats(database.db, [50, 100], ['p-shrink'])).toMatchObject({ due: before.due });

  const looked: string[] = [];
  sweep = startSweep('p-shrink', (target) => {
    looked.push(target.id);
    return sent();
  });
  const row = await eventually(async () => {
    const message = await database.db
      .selectFrom('messages')
      .select(['stuck', 'sweep_step'])
      .where('id', '=', id!)
      .executeTakeFirstOrThrow();
    return message.stuck && message;
  }, 5_000);
  expect(row).toMatchObject({ stuck: true, sweep_step: 3 });
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(looked).toEqual([id]); // stuck: not looked up again
});

test('When a replica claims a batch, then its lease covers every lookup of the batch timing out', async () => {
  const ids = await sentMessages('p-lease', 10);
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let first = true;
  // RECONCILE_RATE 5: a batch of 10, a lookup every 200 ms, each may take the lookup's whole
  // timeout (SIGNALWIRE_TIMEOUT_MS, 10 s by default): 10 × 10.2 s.
  sweep = startSweep(
    'p-lease',
    async () => {
      if (first) {
        first = false;
        await held;
      }
      return sent();
    },
    { rate: 5 },
  );
  try {
    const { rows } = await eventually(async () => {
      const result = await sql<{ leased: number; left_s: number }>`
        SELECT count(*)::int AS leased,
               extract(epoch FROM min(sweep_lease_until) - now())::float8 AS left_s
        FROM messages WHERE id = ANY(${ids}::text[]) AND sweep_lease_until > now()`.execute(
        database.db,
      );
      return result.rows[0]!.leased === 10 && result;
    }, 5_000);
    // Before, 60 s plus the batch's pacing (62 s): the tail of a slow batch could be claimed
    // and looked up by a second replica while this one was still working through it.
    expect(rows[0]!.left_s).toBeGreaterThanOrEqual(10 * 10.2 - 5);
  } finally {
    release();
  }
});

test('When a batch has outrun its lease, then the rest of it is left for a later claim instead of being looked up', async () => {
  const ids = await sentMessages('p-guard', 3);
  const looked: string[] = [];
  let offsetMs = 0;
  sweep = startSweep(
    'p-guard',
    (target) => {
      looked.push(target.id);
      // As if this lookup and its recording had taken an hour: every lease has run out.
      offsetMs = 3_600_000;
      return sent();
    },
    {
      clock: () => new Date(Date.now() + offsetMs),
      elapsedClock: () => performance.now() + offsetMs,
    },
  );
  await eventually(() => looked.length > 0, 20_000);
  await new Promise((resolve) => setTimeout(resolve, 500));
  // The first message may come round again (its next step is due at once here); the two
  // left in the batch stay leased to this replica until their lease runs out.
  expect(ids).toContain(looked[0]);
  expect(looked.filter((id) => id !== looked[0])).toEqual([]);
});

test('When messages belong to a project without credentials, then they are not counted as due: no sweep will ever look them up', async () => {
  await sentMessages('p-without-credentials', 3);
  await sentMessages('p-counted', 2);
  expect(await sweepStats(database.db, [50, 100], ['p-counted'])).toMatchObject({ due: 2 });
  expect(await sweepStats(database.db, [50, 100], [])).toMatchObject({
    due: 0,
    oldestDueSeconds: 0,
  });
});
