import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import type { TestApp } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';
import { lockTimeoutApp } from './support/lock-timeout-app';
import type { LockTimeoutApp } from './support/lock-timeout-app';

/**
 * An operator's lock_timeout on the service's role or database, shorter than the live commit
 * timeout (managed PostgreSQL guides recommend a second or so), while `messages` is locked
 * (LOCK TABLE, an ALTER TABLE waiting for its lock, VACUUM FULL). The batch fails with 55P03
 * at once, which looks like one poisoned event: the recorder retries each event alone. Every
 * one of them then fails alike, one after the other, each given a commit timeout of its own:
 * the last of a batch was answered many seconds after SignalWire (5 s) had given up, and none
 * was spooled although a spool was there to keep them. The fallback now has what is left of
 * the batch's commit timeout, an event failing with 55P03 tried again within it; then the rest
 * is spooled.
 */

jest.setTimeout(60_000);

const COMMIT_TIMEOUT_MS = 1_000;
const ROLE_LOCK_TIMEOUT_MS = 200;
const CALLBACKS = 30;

let app: LockTimeoutApp;
let t: TestApp;

beforeAll(async () => {
  app = await lockTimeoutApp({
    lockTimeoutMs: ROLE_LOCK_TIMEOUT_MS,
    commitTimeoutMs: COMMIT_TIMEOUT_MS,
  });
  t = app.t;
});

afterAll(() => app?.close());

test('When the operator’s lock_timeout is shorter than the commit timeout and messages is locked, then every callback of a batch is answered within the commit timeout, and those not refused are spooled and stored once the lock is gone', async () => {
  const operator = new Client({ connectionString: t.database.url });
  await operator.connect();
  await operator.query('BEGIN');
  await operator.query('LOCK TABLE messages IN ACCESS EXCLUSIVE MODE');

  const ids = Array.from({ length: CALLBACKS }, () => randomUUID());
  const began = Date.now();
  const answers = await Promise.all(
    ids.map((id) =>
      postCxml(t.publicApp, cxmlFields({ MessageSid: id })).then((res) => ({
        id,
        status: res.status,
        ms: Date.now() - began,
      })),
    ),
  );
  await operator.query('ROLLBACK');
  await operator.end();

  // One batch's commit timeout, plus a write of the spool and the scheduling around it — or,
  // when the first callbacks made a batch of their own (the requests reach a loaded machine
  // spread out), that batch's part of a timeout before the next batch's whole one. Each event
  // given its own, as before, took CALLBACKS × ROLE_LOCK_TIMEOUT_MS (6 s).
  const slowest = Math.max(...answers.map((answer) => answer.ms));
  expect(slowest).toBeLessThan(2 * COMMIT_TIMEOUT_MS + 1_500);
  // None is refused: an event failing for the moment's sake is tried again until the batch's
  // deadline, then it and the rest of its batch are spooled (a 503 each, before, for those
  // whose own try failed while the batch's time lasted).
  expect(answers.map(({ status }) => status)).toEqual(ids.map(() => 200));

  await eventually(async () => {
    const { rows } = await t.database.pool.query<{ n: number }>(
      'SELECT count(DISTINCT message_id)::int AS n FROM status_events WHERE message_id = ANY($1)',
      [ids],
    );
    return rows[0]!.n === ids.length;
  }, 'every acknowledged callback stored once the lock is gone');
});
