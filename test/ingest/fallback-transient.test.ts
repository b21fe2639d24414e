import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { sqlState } from '../../src/db/write-failure';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { recordEvents } from '../../src/messages/record-events';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { eventually, gate } from '../helpers/eventually';
import { holdRowLock } from '../helpers/lock-waits';
import type { TestApp } from '../helpers/test-app';
import { lockTimeoutApp } from './support/lock-timeout-app';
import type { LockTimeoutApp } from './support/lock-timeout-app';

/**
 * A batch that fails is retried one event at a time (commitOneByOne). An event that then fails
 * for the moment's sake — its message's row locked past the operator's lock_timeout, a
 * deadlock, a table not there yet — used to be answered 503 at once: SignalWire tries a status
 * callback three times in all, within 15 s, and then gives up, so a lock held a little longer
 * lost the callback. Now it is tried again within the batch's commit timeout and stored
 * directly when the moment passes (never spooled, nothing 503); only past the deadline does it
 * go to the spool (fallback-deadline.test.ts).
 */

jest.setTimeout(60_000);

const COMMIT_TIMEOUT_MS = 8_000;
const ROLE_LOCK_TIMEOUT_MS = 200;

interface Attempt {
  ids: string[];
  at: number;
  code?: string;
}

// Every write the recorder made, with the SQLSTATE it failed with.
const attempts: Attempt[] = [];
// Writes holding this message fail like a table not yet created, while `failuresLeft` lasts.
let failing: { id: string; failuresLeft: number } | undefined;
// When set, the next write waits for it (once): the callbacks behind it queue up as one batch.
let hold: Promise<void> | undefined;

const write: typeof recordEvents = async (db, events, options) => {
  const attempt: Attempt = { ids: events.map((event) => event.messageId), at: performance.now() };
  attempts.push(attempt);
  const held = hold;
  hold = undefined;
  if (held) await held;
  try {
    if (failing && attempt.ids.includes(failing.id) && failing.failuresLeft > 0) {
      failing.failuresLeft--;
      throw Object.assign(new Error('relation "status_events" does not exist'), {
        code: '42P01',
      });
    }
    return await recordEvents(db, events, options);
  } catch (error) {
    attempt.code = sqlState(error);
    throw error;
  }
};

let app: LockTimeoutApp;
let t: TestApp;
let recorder: GroupCommitRecorder;

beforeAll(async () => {
  app = await lockTimeoutApp({
    lockTimeoutMs: ROLE_LOCK_TIMEOUT_MS,
    commitTimeoutMs: COMMIT_TIMEOUT_MS,
    write,
  });
  ({ t, recorder } = app);
});

afterAll(() => app?.close());

async function historyOf(id: string): Promise<string[]> {
  const { rows } = await t.database.pool.query<{ status: string }>(
    'SELECT status FROM status_events WHERE message_id = $1 ORDER BY seq',
    [id],
  );
  return rows.map((row) => row.status);
}

test('When a message’s row stays locked past the operator’s lock_timeout but not past the commit timeout, then its callback is tried again and stored directly, and every callback of its batch is acknowledged', async () => {
  const locked = randomUUID();
  expect(
    (await postCxml(t.publicApp, cxmlFields({ MessageSid: locked, MessageStatus: 'sent' }))).status,
  ).toBe(200);
  const holder = await holdRowLock(t.database.url, locked);
  const spooledBefore = recorder.stats().spooled;
  const retriesBefore = recorder.stats().fallbackRetries;
  const from = attempts.length;

  const others = Array.from({ length: 5 }, () => randomUUID());
  const answers = Promise.all(
    [locked, ...others].map((id) =>
      postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'delivered' })),
    ),
  );
  // The fallback's own write of the locked message has failed and is being tried again: with
  // the old fallback its callback was answered 503 right then.
  await eventually(
    () => recorder.stats().fallbackRetries > retriesBefore,
    'the locked message’s own write refused by lock_timeout and tried again',
  );
  expect(
    attempts
      .slice(from)
      .some((a) => a.ids.length === 1 && a.ids[0] === locked && a.code === '55P03'),
  ).toBe(true);
  await holder.query('ROLLBACK');
  await holder.end();

  expect((await answers).map((res) => res.status)).toEqual([200, 200, 200, 200, 200, 200]);
  expect(await historyOf(locked)).toEqual(['sent', 'delivered']);
  for (const id of others) expect(await historyOf(id)).toEqual(['delivered']);
  expect(recorder.stats().spooled).toBe(spooledBefore);
  expect(recorder.mode()).toBe('direct');
});

test('When an event’s write fails at once for the moment’s sake, then it is tried again after a growing backoff, not in a tight loop, and its batch’s later event waits for it', async () => {
  const flaky = randomUUID();
  const later = randomUUID();
  // A first callback's write held open, so that the two behind it make one batch, in order.
  const held = gate();
  hold = held.wait;
  const queuedBefore = recorder.stats().queued;
  const first = postCxml(t.publicApp, cxmlFields()).then((res) => res.status);
  await eventually(() => hold === undefined, 'the first write is held');
  const flakyAnswer = postCxml(t.publicApp, cxmlFields({ MessageSid: flaky })).then(
    (r) => r.status,
  );
  await eventually(() => recorder.stats().queued === queuedBefore + 1, 'the flaky callback queued');
  const laterAnswer = postCxml(t.publicApp, cxmlFields({ MessageSid: later })).then(
    (r) => r.status,
  );
  await eventually(() => recorder.stats().queued === queuedBefore + 2, 'the later callback queued');
  failing = { id: flaky, failuresLeft: 4 }; // the batch's write, then three of its own
  const from = attempts.length;
  held.open();
  const answers = await Promise.all([first, flakyAnswer, laterAnswer]);
  failing = undefined;

  expect(answers).toEqual([200, 200, 200]);
  const tried = attempts.slice(from);
  expect(tried[0]).toMatchObject({ ids: [flaky, later], code: '42P01' });
  const own = tried.filter((a) => a.ids.length === 1 && a.ids[0] === flaky);
  expect(own.map((a) => a.code)).toEqual(['42P01', '42P01', '42P01', undefined]);
  // 25, 50 and 100 ms apart at least (a timer never fires early; a loaded machine only adds).
  const gaps = own.slice(1).map((a, index) => a.at - own[index]!.at);
  gaps.forEach((gap, index) => expect(gap).toBeGreaterThanOrEqual(25 * 2 ** index - 1));
  // The later event is written only once the retried one is in: its history keeps order.
  const laterOwn = tried.filter((a) => a.ids.length === 1 && a.ids[0] === later);
  expect(laterOwn).toHaveLength(1);
  expect(laterOwn[0]!.at).toBeGreaterThan(own.at(-1)!.at);
  expect(await historyOf(flaky)).toEqual(['delivered']);
  expect(await historyOf(later)).toEqual(['delivered']);
  expect(recorder.mode()).toBe('direct');
});
