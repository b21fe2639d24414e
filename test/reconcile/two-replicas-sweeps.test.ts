import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import type { LookupResult } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { eventually } from '../helpers/eventually';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { sentMessage, startTestSweep } from '../reconcile/support';

/**
 * Several replicas on one database (kept from a cross-replica review, where it held):
 * the sweep runs on every replica. Two sweeps, each on its own pool (two
 * replicas), over the same due messages: no message is ever looked up by both at once, each
 * is looked up once per step of the schedule (two), and all end stuck.
 */

const PROJECT = 'p-two-sweeps';
let database: TestDatabase;
let second: DatabaseHandle;
const sweeps: ReconcileWorker[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  second = createDb(database.url);
});
afterAll(async () => {
  await Promise.all(sweeps.map((s) => s.stop()));
  await second.db.destroy();
  await database.destroy();
});

test('When two replicas sweep the same 120 due messages, then none is looked up twice at once or more than once per step', async () => {
  const ids: string[] = [];
  for (let n = 0; n < 120; n++)
    ids.push(await sentMessage(database.db, { projectId: PROJECT, api: 'native' }));
  const inFlight = new Set<string>();
  let overlaps = 0;
  const lookups = new Map<string, number>();
  const lookup = {
    async lookup(target: { id: string }): Promise<LookupResult> {
      if (inFlight.has(target.id)) overlaps++;
      inFlight.add(target.id);
      lookups.set(target.id, (lookups.get(target.id) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, Math.random() * 15));
      inFlight.delete(target.id);
      return { kind: 'found', answer: { id: target.id, project_id: PROJECT, status: 'sent' } };
    },
  };
  sweeps.push(
    startTestSweep({ db: database.db, lookup, projects: [PROJECT], rate: 1000, pollMs: 5 }),
  );
  sweeps.push(
    startTestSweep({ db: second.db, lookup, projects: [PROJECT], rate: 1000, pollMs: 5 }),
  );
  await eventually(
    async () => {
      const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM messages WHERE stuck`.execute(database.db);
      return rows[0]!.n === ids.length;
    },
    'all stuck',
    60_000,
  );
  await new Promise((r) => setTimeout(r, 300));
  const counts = [...lookups.values()].reduce<Record<number, number>>(
    (acc, n) => ({ ...acc, [n]: (acc[n] ?? 0) + 1 }),
    {},
  );
  expect({ overlaps, counts }).toEqual({ overlaps: 0, counts: { 2: 120 } });
}, 90_000);
