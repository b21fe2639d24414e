import { createLogger } from '../../src/logger';
import type { LookupResult, LookupTarget } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker, ReconcileWorkerOptions } from '../../src/reconcile/reconcile-worker';
import { refusalPause } from '../../src/reconcile/sweep-policy';
import { createTestDatabase } from '../helpers/test-database';
import { alertRules } from '../ops/alert-rules';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { sentMessage, startTestSweep } from './support';

/**
 * Rotated or revoked credentials (401/403 for every lookup of a project) are not the message's
 * doing. Each refusal used to count as the message's step: a message overdue for every step
 * got all its lookups back to back and was stuck within ~100 ms — and after the operator fixed
 * the token it was never looked up again — while the replica kept sending lookups SignalWire
 * refused at full RECONCILE_RATE. Now a refusal pauses that project's lookups on the replica,
 * doubling while it lasts (logged once), and uses up no message's step. A refusal that is one
 * message's own (its project's other lookups go through) still counts as its step.
 */

const DAY_SCHEDULE = [600_000, 3_600_000, 21_600_000, 86_400_000];
let database: TestDatabase;
let sweep: ReconcileWorker | undefined;
let lines: Array<{ level: number; msg: string; project_id?: string }> = [];
let looked: LookupTarget[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});

afterEach(async () => {
  await sweep?.stop();
  sweep = undefined;
  lines = [];
  looked = [];
});

afterAll(() => database.destroy());

function startSweep(
  answer: (target: LookupTarget) => LookupResult,
  options: Pick<ReconcileWorkerOptions, 'projects'> & Partial<ReconcileWorkerOptions>,
): void {
  sweep = startTestSweep({
    db: database.db,
    logger: createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) }),
    lookup: {
      async lookup(target): Promise<LookupResult> {
        looked.push(target);
        return answer(target);
      },
    },
    ...options,
  });
}

const state = (id: string) =>
  database.db
    .selectFrom('messages')
    .select(['status', 'sweep_step', 'stuck', 'sweep_error'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

const lookupsOf = (project: string) => looked.filter((t) => t.projectId === project).length;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('When SignalWire refuses a project’s credentials, then its overdue messages keep their steps, its lookups pause (logged once), and other projects are still swept', async () => {
  // Last events 25 h old: overdue for every step of the default schedule.
  const refused = await Promise.all(
    [1, 2, 3].map(() =>
      sentMessage(database.db, { projectId: 'p-rotated', ageMs: 25 * 3_600_000 }),
    ),
  );
  const fine = await sentMessage(database.db, { projectId: 'p-fine', ageMs: 25 * 3_600_000 });
  startSweep(
    (target) =>
      target.projectId === 'p-rotated'
        ? { kind: 'unauthorized' }
        : { kind: 'found', answer: { sid: target.id, status: 'delivered' } },
    { projects: ['p-rotated', 'p-fine'], schedule: DAY_SCHEDULE },
  );
  await eventually(async () => (await state(fine)).status === 'delivered', 20_000);
  // The refused lookup has happened (waited for: the fixed pause alone could end before it on a
  // loaded machine), then a second in which no other may follow.
  await eventually(() => lookupsOf('p-rotated') >= 1, 20_000);
  await pause(1_000);

  // One lookup refused; the project's other messages were not looked up meanwhile.
  expect(lookupsOf('p-rotated')).toBe(1);
  const first = refused.indexOf(looked.find((t) => t.projectId === 'p-rotated')!.id);
  // The lookup is counted as it starts; the refusal is written after it (postpone): waited
  // for, not only the pause.
  await eventually(async () => (await state(refused[first]!)).sweep_error !== null, 20_000);
  const states = await Promise.all(refused.map(state));
  expect(states[first]).toEqual({
    status: 'sent',
    sweep_step: 0,
    stuck: false,
    sweep_error: 'unauthorized',
  });
  for (const [i, s] of states.entries()) {
    if (i !== first)
      expect(s).toEqual({ status: 'sent', sweep_step: 0, stuck: false, sweep_error: null });
  }
  const warned = lines.filter((l) => /refused the project.s credentials/.test(l.msg));
  expect(warned).toHaveLength(1);
  expect(warned[0]).toMatchObject({ project_id: 'p-rotated' });
  // SwStatusReconcileStalled tells the operator to search the logs for this line: the text it
  // quotes is the text logged (a typographic apostrophe here once matched no grep).
  const stalled = alertRules().find((rule) => rule.alert === 'SwStatusReconcileStalled');
  const quoted = /"(SignalWire refused[^"]*)"/.exec(stalled?.annotations?.description ?? '');
  expect(quoted).not.toBeNull();
  expect(warned[0]!.msg).toContain(quoted![1]);
});

test('When the token is fixed after refusals, then the project’s messages are looked up again and recorded, and the recovery is logged once', async () => {
  const id = await sentMessage(database.db, { projectId: 'p-fixed', ageMs: 25 * 3_600_000 });
  let tokenFixed = false;
  startSweep(
    (target) =>
      tokenFixed
        ? { kind: 'found', answer: { sid: target.id, status: 'delivered' } }
        : { kind: 'unauthorized' },
    { projects: ['p-fixed'], schedule: DAY_SCHEDULE, refusalPause: (n) => 100 * 2 ** (n - 1) },
  );
  // Refused for a second and a half: the pauses double (100, 200, 400, 800 ms…), so a handful
  // of lookups, not RECONCILE_RATE's hundreds.
  const started = Date.now();
  // At least the first refusal (waited for: on a loaded machine it may come late), then the
  // rest of the second and a half.
  await eventually(() => looked.length >= 1, 20_000);
  await pause(Math.max(0, 1_500 - (Date.now() - started)));
  const refusedLookups = looked.length;
  expect(refusedLookups).toBeGreaterThanOrEqual(1);
  expect(refusedLookups).toBeLessThanOrEqual(4);
  expect(await state(id)).toMatchObject({ sweep_step: 0, stuck: false });

  tokenFixed = true;
  const after = await eventually(async () => {
    const s = await state(id);
    // The event, then the step that clears the refusal off the sweep state.
    return s.status === 'delivered' && s.sweep_error === null && s;
  }, 10_000);
  expect(after.stuck).toBe(false);
  expect(lines.filter((l) => /refused the project.s credentials/.test(l.msg))).toHaveLength(1);
  expect(lines.filter((l) => /accepts the project's credentials again/.test(l.msg))).toHaveLength(
    1,
  );
});

test('When one message is refused while its project’s other lookups go through, then the refusal is the message’s own and counts as its step', async () => {
  // Oldest, so that its lookup comes first and pauses the project once.
  const own = await sentMessage(database.db, { projectId: 'p-own', ageMs: 61_000 });
  const others = await Promise.all(
    [1, 2, 3].map(() => sentMessage(database.db, { projectId: 'p-own', ageMs: 60_000 })),
  );
  startSweep(
    (target) =>
      target.id === own
        ? { kind: 'unauthorized' }
        : { kind: 'found', answer: { sid: target.id, status: 'delivered' } },
    { projects: ['p-own'], refusalPause: () => 100 },
  );
  const after = await eventually(async () => {
    const s = await state(own);
    return s.stuck && s;
  }, 10_000);
  expect(after).toEqual({
    status: 'sent',
    sweep_step: 2,
    stuck: true,
    sweep_error: 'unauthorized',
  });
  for (const id of others) expect((await state(id)).status).toBe('delivered');
  // Once with the project paused after it, then once per step.
  expect(looked.filter((t) => t.id === own)).toHaveLength(3);
});

test('The pause after refused credentials doubles from 30 s up to 15 min', () => {
  expect([1, 2, 3, 4].map(refusalPause)).toEqual([30_000, 60_000, 120_000, 240_000]);
  expect(refusalPause(50)).toBe(900_000);
});
