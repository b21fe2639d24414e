import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { claimDueMessages, sweepStats } from '../../src/reconcile/reconcile.repository';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { readByStatement } from './support';

/**
 * The sweep's claim and statistics (src/reconcile/reconcile.repository.ts) read only the
 * messages due for a lookup (messages_sweep_due_idx, migration 0014): never the messages
 * waiting for a later step of RECONCILE_SCHEDULE, nor those of a project without credentials.
 * Walking every sweepable message oldest first, a claim read all of those — 10⁵–10⁶ rows at a
 * few million messages a day — on every poll of every replica.
 */

const SCHEDULE = [600_000, 3_600_000, 21_600_000, 86_400_000]; // 10m,1h,6h,24h
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});

afterAll(() => database.destroy());

/**
 * `count` messages of `project` at `sent` and at `step`, their last events `fromMs` old and
 * newer by `stepMs` each, their last lookup (if `checkedMs`) that long ago; their ids.
 */
async function seed(
  project: string,
  count: number,
  {
    step,
    fromMs,
    stepMs = 1,
    checkedMs,
  }: { step: number; fromMs: number; stepMs?: number; checkedMs?: number },
): Promise<string[]> {
  const prefix = randomUUID();
  const { rows } = await sql<{ id: string }>`
    INSERT INTO messages (id, api, project_id, kind, status, raw_status, status_rank,
      status_received_at, last_event_at, sweep_step, sweep_checked_at)
    SELECT ${prefix}::text || '-' || g, 'cxml', ${project}, 'sms', 'sent', 'sent', 30, at, at,
      ${step}::smallint,
      now() - ${checkedMs ?? null}::bigint * interval '1 millisecond'
    FROM generate_series(0, ${count - 1}::int) AS g,
      LATERAL (SELECT now() - (${fromMs}::bigint - g * ${stepMs}::bigint) * interval '1 millisecond' AS at) t
    ORDER BY at
    RETURNING id`.execute(database.db);
  return rows.map((row) => row.id);
}

test('When 20 000 sweepable messages are not due (later steps, a project without credentials) and a few are, then a claim reads a few dozen rows and claims exactly the due ones, oldest first', async () => {
  // Waiting for their 24 h step: 6–24 h old, looked up three times.
  await seed('p-due', 8_000, { step: 3, fromMs: 23 * HOUR, stepMs: 2_000, checkedMs: 6 * HOUR });
  // Waiting for their 1 h step: 11–59 min old, looked up once.
  await seed('p-due', 4_000, { step: 1, fromMs: 59 * MINUTE, stepMs: 100, checkedMs: MINUTE });
  // Overdue (two days old), looked up at their first step a minute ago: due for the next at once
  // (a backlog's lookups run back to back, reconcile.repository.ts).
  const backlog = await seed('p-due', 2, { step: 1, fromMs: 48 * HOUR, checkedMs: MINUTE });
  // Due by age but of a project without credentials: never looked up.
  await seed('p-none', 8_000, { step: 0, fromMs: 30 * HOUR, stepMs: 1_000 });
  // Due: two at step 2 (7 h old, looked up 6 h ago), three at step 0 (15–17 min old), one
  // overdue at step 1 whose lookup was long ago (three days old, looked up two days ago).
  const atStep2 = await seed('p-due', 2, { step: 2, fromMs: 7 * HOUR, checkedMs: 6 * HOUR });
  const atStep0 = await seed('p-due', 3, { step: 0, fromMs: 17 * MINUTE, stepMs: MINUTE });
  const overdue = await seed('p-due', 1, { step: 1, fromMs: 72 * HOUR, checkedMs: 48 * HOUR });
  // Four lookups under a longer schedule, due for the last step of this one once more.
  const past = await seed('p-due', 1, { step: 4, fromMs: 30 * HOUR, checkedMs: 25 * HOUR });
  await sql`ANALYZE messages`.execute(database.db);

  const claim = { limit: 50, leaseMs: 60_000, schedule: SCHEDULE, projects: ['p-due'] };
  const read = await readByStatement(database.db, (db) => claimDueMessages(db, claim));
  console.log(`claim: ${read.rows} rows of messages read, ${read.buffers} buffers`);
  // About four per due message (its index entry and row, the row locked, the row leased: 36
  // here). Walking the sweep in age order read the 20 000.
  expect(read.rows).toBeLessThanOrEqual(40);
  expect(read.buffers).toBeLessThan(200);

  const claimed = await claimDueMessages(database.db, claim);
  expect(claimed.map((message) => message.id)).toEqual([
    ...overdue,
    ...backlog,
    ...past,
    ...atStep2,
    ...atStep0,
  ]);
  expect(claimed.map((message) => message.step)).toEqual([1, 1, 1, 4, 2, 2, 0, 0, 0]);
});

test('When 20 000 sweepable messages are not due, then the statistics count the due ones reading only those', async () => {
  const project = 'p-stats';
  await seed(project, 12_000, { step: 3, fromMs: 23 * HOUR, stepMs: 1_000, checkedMs: 6 * HOUR });
  await seed(project, 8_000, { step: 1, fromMs: 59 * MINUTE, stepMs: 100, checkedMs: MINUTE });
  await seed(project, 2, { step: 1, fromMs: 48 * HOUR, checkedMs: MINUTE });
  await seed(project, 3, { step: 0, fromMs: 17 * MINUTE, stepMs: MINUTE });
  // Due for 2 h: 6 h old 2 h ago.
  await seed(project, 1, { step: 2, fromMs: 8 * HOUR, checkedMs: 7.5 * HOUR });
  await sql`ANALYZE messages`.execute(database.db);

  const read = await readByStatement(database.db, (db) => sweepStats(db, SCHEDULE, [project]));
  console.log(`statistics: ${read.rows} rows of messages read, ${read.buffers} buffers`);
  expect(read.rows).toBeLessThanOrEqual(40);

  const stats = await sweepStats(database.db, SCHEDULE, [project]);
  expect(stats.due).toBe(6);
  // The two at step 1, 48 h old: due since they were an hour old.
  expect(stats.oldestDueSeconds).toBeGreaterThan(47 * 3_600 - 60);
  expect(stats.oldestDueSeconds).toBeLessThan(47 * 3_600 + 60);
});
