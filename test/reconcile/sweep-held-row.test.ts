import { Client } from 'pg';
import { createLogger } from '../../src/logger';
import type { Api } from '../../src/messages/statuses';
import type { LookupResult } from '../../src/reconcile/lookup-client';
import type { LookupOutcome, ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { eventually } from '../helpers/eventually';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { sentMessage, startTestSweep } from './support';

/**
 * The sweep wrote what came of a lookup with plain statements outside any transaction
 * (reconcile.repository.ts recordStep / postpone / release): no lock_timeout, no statement
 * timeout. While another session held the message's row (an operator's SELECT … FOR UPDATE
 * left open, a long transaction), the write waited for as long as the lock lasted: the sweep's
 * one loop stopped for every message, and its stop() — which main.ts awaits (beforeDrain)
 * before the recorder drains on SIGTERM — did not return, so the shutdown neither drained the
 * recorder nor replayed the spool; the grace-period backstop exited instead. Each write now
 * gives up after SWEEP_WRITE_TIMEOUT_MS: the message keeps its lease, which runs out, and is
 * looked up again at the same step; the loop goes on to the other messages.
 */

jest.setTimeout(30_000);

interface Line {
  msg: string;
  message_id?: string;
  code?: string;
}

let database: TestDatabase;
let operator: Client | undefined;
let worker: ReconcileWorker | undefined;

beforeAll(async () => {
  database = await createTestDatabase(4);
});
afterEach(async () => {
  await operator?.query('ROLLBACK').catch(() => undefined);
  await operator?.end().catch(() => undefined);
  operator = undefined;
  await worker?.stop();
  worker = undefined;
});
afterAll(async () => {
  await database.destroy();
});

/** An operator's session holding the message's row (SELECT … FOR UPDATE, left open). */
async function holdRow(id: string): Promise<void> {
  operator = new Client({ connectionString: database.url });
  operator.on('error', () => undefined);
  await operator.connect();
  await operator.query('BEGIN');
  await operator.query('SELECT 1 FROM messages WHERE id = $1 FOR UPDATE', [id]);
}

const sweepState = (id: string) =>
  database.db
    .selectFrom('messages')
    .select(['sweep_step', 'sweep_lease_until', 'sweep_checked_at'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

test('When another session holds a message row while the sweep records its lookup, then the sweep still stops within 5 s', async () => {
  const PROJECT = 'p-held-stop';
  const id = await sentMessage(database.db, { projectId: PROJECT });
  let looked!: () => void;
  const lookedUp = new Promise<void>((resolve) => (looked = resolve));
  worker = startTestSweep({
    db: database.db,
    projects: [PROJECT],
    lookup: {
      async lookup(): Promise<LookupResult> {
        // The operator's session takes the row while SignalWire answers.
        await holdRow(id);
        looked();
        return { kind: 'not_found' };
      },
    },
  });
  await lookedUp;
  await new Promise((resolve) => setTimeout(resolve, 200));

  const started = Date.now();
  const stopped = await Promise.race([
    worker.stop().then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5_000)),
  ]);
  expect({ stopped, ms: Date.now() - started }).toMatchObject({ stopped: true });
});

test('When another session holds one message row while its lookup is recorded, then the other messages are looked up and recorded, the held one keeps its step and lease, and it counts once when looked up again', async () => {
  const PROJECT = 'p-held-others';
  const held = await sentMessage(database.db, { projectId: PROJECT, ageMs: 120_000 });
  const others = [
    await sentMessage(database.db, { projectId: PROJECT }),
    await sentMessage(database.db, { projectId: PROJECT }),
  ];
  const lines: Line[] = [];
  const outcomes: Array<[string, LookupOutcome]> = [];
  const lookups: string[] = [];
  let claimedLease: Date | null = null;
  worker = startTestSweep({
    db: database.db,
    projects: [PROJECT],
    // One step due at once, the next an hour on: each message is looked up once here.
    schedule: [50, 3_600_000],
    logger: createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) }),
    // Each lookup counted with the message it was about: lookups run one at a time, in order.
    onLookup: (_api: Api, outcome: LookupOutcome) => outcomes.push([lookups.at(-1)!, outcome]),
    lookup: {
      async lookup({ id }): Promise<LookupResult> {
        lookups.push(id);
        // Oldest first: the held message is the batch's first; its row is taken mid-lookup.
        if (id === held && !operator) {
          claimedLease = (await sweepState(held)).sweep_lease_until;
          await holdRow(held);
        }
        return { kind: 'not_found' };
      },
    },
  });

  // The others are recorded while the row is still held.
  await eventually(async () => {
    const states = await Promise.all(others.map(sweepState));
    return states.every((state) => state.sweep_step === 1);
  }, 'the other messages recorded');
  expect(lookups.slice(0, 3)).toEqual([held, ...others]);
  // The worker counts a lookup (onLookup) only once its step's write has returned: the last
  // one's commit can be seen here a moment before.
  await eventually(() => outcomes.length >= 3, 'the other messages counted');
  // Untouched: its step, and the claim's lease, which runs out by itself.
  const during = await sweepState(held);
  expect(during.sweep_step).toBe(0);
  expect(during.sweep_checked_at).toBeNull();
  expect(during.sweep_lease_until!.getTime()).toBeGreaterThan(Date.now());
  expect(during.sweep_lease_until).toEqual(claimedLease);
  expect(outcomes.slice(0, 3)).toEqual([
    [held, 'not_recorded'],
    [others[0], 'not_found'],
    [others[1], 'not_found'],
  ]);
  // Said once, naming why; and once that lookups are recorded again.
  const failed = lines.filter((line) => line.msg.startsWith('lookup not recorded'));
  expect(failed).toHaveLength(1);
  expect(failed[0]).toMatchObject({ message_id: held, code: '57014' });
  expect(lines.filter((line) => line.msg === 'lookups are recorded again')).toHaveLength(1);

  // The operator lets go and the lease runs out (brought forward: it lasts minutes): the held
  // message is looked up again at the same step, and moves one step, not two.
  await operator!.query('ROLLBACK');
  await database.db
    .updateTable('messages')
    .set({ sweep_lease_until: new Date(Date.now() - 1_000) })
    .where('id', '=', held)
    .execute();
  await eventually(
    async () => (await sweepState(held)).sweep_step === 1,
    'the held message recorded',
  );
  await worker.stop();
  expect(outcomes.filter(([id]) => id === held)).toEqual([
    [held, 'not_recorded'],
    [held, 'not_found'],
  ]);
  expect((await sweepState(held)).sweep_lease_until).toBeNull();
});

test('When stop() is given a wait and a lookup does not end within it, then stop() returns after the wait and the message keeps its lease', async () => {
  const PROJECT = 'p-held-abandoned';
  const id = await sentMessage(database.db, { projectId: PROJECT });
  let looked!: () => void;
  const lookedUp = new Promise<void>((resolve) => (looked = resolve));
  let answer!: (result: LookupResult) => void;
  worker = startTestSweep({
    db: database.db,
    projects: [PROJECT],
    lookup: {
      lookup(): Promise<LookupResult> {
        looked();
        return new Promise((resolve) => (answer = resolve));
      },
    },
  });
  await lookedUp;

  const started = Date.now();
  await worker.stop({ waitMs: 300 });
  expect(Date.now() - started).toBeLessThan(2_000);
  const left = await sweepState(id);
  expect(left.sweep_step).toBe(0);
  expect(left.sweep_lease_until!.getTime()).toBeGreaterThan(Date.now());

  // The abandoned lookup ends by itself; the loop looks nothing more up.
  answer({ kind: 'not_found' });
  await worker.stop();
  expect((await sweepState(id)).sweep_step).toBe(1);
});
