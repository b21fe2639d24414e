import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { LookupResult } from '../../src/reconcile/lookup-client';
import { unusableAnswer } from '../../src/reconcile/lookup-event';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { sentMessage, startTestSweep } from './support';

/**
 * A lookup answer PostgreSQL cannot store — a `to` of kilobytes (a gateway's error page in JSON,
 * a corrupted record) is too large for an entry of messages_to_idx — failed the write on every
 * lease: the worker only logged it, the step never advanced, and the message was claimed and
 * looked up again after every lease, for ever. Callbacks refuse such values (256 characters at
 * most: src/callbacks/normalize.ts); lookups now do too, and any answer the database refuses as
 * data (SQLSTATE class 22, 23, 54) counts as its step, the reason on the message's sweep state.
 * A database that is unavailable or times out says nothing about the answer: no step is used up.
 */

const PROJECT = 'p-unwritable';
let database: TestDatabase;
let sweep: ReconcileWorker | undefined;
let looked = new Map<string, number>();

beforeAll(async () => {
  database = await createTestDatabase();
  // Refuses the reconcile event of a message whose id begins `refuse-<SQLSTATE>-`, as the
  // database would refuse a value, or as one in trouble would fail any write.
  await sql`
    CREATE FUNCTION test_refuse_reconcile() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.source = 'reconcile' AND NEW.message_id LIKE 'refuse-%' THEN
        RAISE EXCEPTION 'refused by the test' USING ERRCODE = split_part(NEW.message_id, '-', 2);
      END IF;
      RETURN NEW;
    END $$`.execute(database.db);
  await sql`
    CREATE TRIGGER test_refuse_reconcile BEFORE INSERT ON status_events
    FOR EACH ROW EXECUTE FUNCTION test_refuse_reconcile()`.execute(database.db);
});

afterEach(async () => {
  await sweep?.stop();
  sweep = undefined;
  looked = new Map();
});

afterAll(() => database.destroy());

function startSweep(answer: (id: string) => Record<string, unknown>): void {
  sweep = startTestSweep({
    db: database.db,
    lookup: {
      async lookup({ id }): Promise<LookupResult> {
        looked.set(id, (looked.get(id) ?? 0) + 1);
        return { kind: 'found', answer: answer(id) };
      },
    },
    projects: [PROJECT],
  });
}

const state = (id: string) =>
  database.db
    .selectFrom('messages')
    .select(['status', 'sweep_step', 'stuck', 'sweep_error', 'sweep_checked_at'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

test.each(['to', 'from', 'error_code'])(
  'When a lookup answer carries a %s longer than a callback may, then the answer counts as a failed step and the message moves on to stuck',
  async (field) => {
    const id = await sentMessage(database.db, { projectId: PROJECT });
    // Random text: a btree entry cannot compress it below PostgreSQL's ~2.7 kB cap.
    const huge = randomBytes(9_000).toString('base64');
    startSweep((sid) => ({ sid, status: 'delivered', [field]: huge }));
    const after = await eventually(async () => {
      const row = await state(id);
      return row.stuck && row;
    }, 8_000);
    expect(after).toMatchObject({
      status: 'sent',
      sweep_step: 2,
      sweep_error: `the answer's ${field} is too long`,
    });
    expect(looked.get(id)).toBe(2);
  },
);

test('Control: a to of 256 characters is within the bound', () => {
  const message = { id: 'm1', api: 'cxml' as const };
  expect(unusableAnswer(message, { sid: 'm1', to: 'x'.repeat(256) })).toBeNull();
  expect(unusableAnswer(message, { sid: 'm1', to: 'x'.repeat(257) })).toBe(
    "the answer's to is too long",
  );
});

test('When the database refuses what an answer says as data (SQLSTATE class 22), then the lookup counts as its step with the reason, instead of being looked up again after every lease', async () => {
  const id = await sentMessage(database.db, {
    projectId: PROJECT,
    id: `refuse-22023-${randomUUID()}`,
  });
  startSweep((sid) => ({ sid, status: 'delivered' }));
  const after = await eventually(async () => {
    const row = await state(id);
    return row.stuck && row;
  }, 8_000);
  expect(after).toMatchObject({
    status: 'sent',
    sweep_step: 2,
    sweep_error: 'the answer could not be stored [SQLSTATE 22023]',
  });
  expect(looked.get(id)).toBe(2);
});

test.each([
  ['out of resources (53300)', '53300'],
  ['a lock timeout (55P03)', '55P03'],
])(
  'When the write fails because the database is %s, then no step is used up: the lookup is tried again after its lease',
  async (_what, code) => {
    const id = await sentMessage(database.db, {
      projectId: PROJECT,
      id: `refuse-${code}-${randomUUID()}`,
    });
    startSweep((sid) => ({ sid, status: 'delivered' }));
    await eventually(() => looked.get(id) === 1, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await state(id)).toEqual({
      status: 'sent',
      sweep_step: 0,
      stuck: false,
      sweep_error: null,
      sweep_checked_at: null,
    });
    // Its lease (a minute and more) holds it until then.
    expect(looked.get(id)).toBe(1);
  },
);
