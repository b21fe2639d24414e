import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from 'pg';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { spooledRecorder } from './support/spooled-recorder';
import { backendsWaitingOnLock, holdRowLock } from '../helpers/lock-waits';

/**
 * Batches commit concurrently (maxInFlight). When one of them waits on a message's row locked
 * elsewhere (or on a PostgreSQL that stopped answering) until its commit timeout and fails over
 * to the spool, a later batch with an event of the same message must not get ahead of it —
 * spooled first, or committed first — or the history shows that message's callbacks out of
 * arrival order.
 */

jest.setTimeout(60_000);

// Wide apart, so that which timer fires first is never in doubt on a busy machine: the lock
// wait outlasts the commit timeout (batches are spooled), the second batch starts long after
// the first.
const COMMIT_TIMEOUT_MS = 1_000;
const LOCK_TIMEOUT_MS = 1_500;
const SECOND_BATCH_AFTER_MS = 500;

let database: TestDatabase;
let service: DatabaseHandle;
let recorder: GroupCommitRecorder;
let dir: string;
let operator: Client | undefined;

beforeAll(async () => {
  database = await createTestDatabase(2);
  service = createDb(database.url, 6, { lockTimeoutMs: LOCK_TIMEOUT_MS });
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-arrival-order-'));
  recorder = await spooledRecorder(service.db, dir, {
    batchWaitMs: 10,
    maxInFlight: 2,
    commitTimeoutMs: COMMIT_TIMEOUT_MS,
    replayTimeoutMs: 2 * LOCK_TIMEOUT_MS,
  });
});

afterAll(async () => {
  await operator?.end().catch(() => undefined);
  await recorder?.drain();
  await service?.db.destroy();
  await database?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('When a batch waiting on its message’s lock fails over to the spool while a later batch of that message still waits too, then the callbacks arriving meanwhile are spooled behind the later batch’s: the replay stores the message’s callbacks in arrival order', async () => {
  const queued = statusEvent('queued');
  await recordEvents(service.db, [queued]);
  const id = queued.messageId;
  operator = await holdRowLock(database.url, id);

  // A first batch waits for the lock until its commit timeout; a second one starts meanwhile.
  const first = recorder.record(statusEvent('sent', { messageId: id, errorCode: '1' }));
  await new Promise((resolve) => setTimeout(resolve, SECOND_BATCH_AFTER_MS));
  const second = recorder.record(statusEvent('sent', { messageId: id, errorCode: '2' }));
  // The first batch is spooled at its commit timeout; the second's is half a second off. The
  // third would be spooled at once (the spool is in use): it must not get ahead of the second.
  expect(await first).toBe('recorded');
  const third = recorder.record(statusEvent('sent', { messageId: id, errorCode: '3' }));
  expect(await Promise.all([second, third])).toEqual(['recorded', 'recorded']);
  expect(recorder.stats().spooled).toBe(3);

  // The abandoned live writes end at their lock timeout, uncommitted; then the lock goes.
  await eventually(
    async () => (await backendsWaitingOnLock(database.url)) === 0,
    'no live write left waiting',
  );
  await operator.query('ROLLBACK');
  await eventually(() => recorder.mode() === 'direct', 'the spool replayed', 20_000);
  const { rows } = await database.pool.query<{ error_code: string | null }>(
    'SELECT error_code FROM status_events WHERE message_id = $1 ORDER BY seq',
    [id],
  );
  expect(rows.map((row) => row.error_code)).toEqual([null, '1', '2', '3']);
});
