import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from 'pg';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { spooledRecorder } from './support/spooled-recorder';
import { backendsWaitingOnLock, holdRowLock } from '../helpers/lock-waits';

/**
 * A row lock on one message held by someone else: an operator's session left open in a
 * transaction after `SELECT … FOR UPDATE` (or an UPDATE) of that message. The live batch holding
 * the message's event is spooled at its commit timeout; the replay must not then stop on that
 * event for as long as the lock is held, abandoning a waiting connection at each replay timeout
 * while no other message is stored. Every transaction of ours waits for a lock only so long
 * (LOCK_TIMEOUT_MS in db/kysely-pool.ts; shortened here), after which the replay stores the
 * rest of its chunk and retries the locked event, saying so in /readyz.
 */

jest.setTimeout(60_000);

// As in production: the lock wait outlasts the live commit timeout (the batch is spooled) and
// ends before the replay's timeout.
const COMMIT_TIMEOUT_MS = 300;
const LOCK_TIMEOUT_MS = 800;
const REPLAY_TIMEOUT_MS = 2_000;

let database: TestDatabase;
let service: DatabaseHandle;
let recorder: GroupCommitRecorder;
let spoolDir: string;
let operator: Client | undefined;

beforeAll(async () => {
  database = await createTestDatabase(2);
  service = createDb(database.url, 6, { lockTimeoutMs: LOCK_TIMEOUT_MS });
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-row-lock-spool-'));
  recorder = await spooledRecorder(service.db, spoolDir, {
    batchWaitMs: 50,
    maxInFlight: 1,
    commitTimeoutMs: COMMIT_TIMEOUT_MS,
    replayTimeoutMs: REPLAY_TIMEOUT_MS,
  });
});

afterAll(async () => {
  await operator?.end().catch(() => undefined);
  await recorder?.drain();
  await service?.db.destroy();
  await database?.destroy();
  if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
});

async function storedStatus(id: string): Promise<string | undefined> {
  const { rows } = await database.pool.query<{ status: string }>(
    'SELECT status FROM messages WHERE id = $1',
    [id],
  );
  return rows[0]?.status;
}

test('When an operator holds one message’s row lock, then the spooled events of other messages are replayed meanwhile, the locked one is retried as 55P03, and no connection is left waiting on the lock', async () => {
  const locked = statusEvent('sent');
  expect(await recorder.record(locked)).toBe('recorded');
  // The first commit opens a connection: on a loaded machine it can outlast the commit timeout,
  // and the event is spooled and replayed. Either way it is stored before the lock is taken.
  await eventually(
    async () => (await storedStatus(locked.messageId)) === 'sent' && recorder.mode() === 'direct',
    'the locked message stored, writing directly',
    10_000,
  );
  const spooledBefore = recorder.stats().spooled;

  operator = await holdRowLock(database.url, locked.messageId);

  // One batch: the locked message's next event and another message's. The batch cannot commit
  // within the commit timeout, so both are spooled (acknowledged) and replayed in one chunk.
  const delivered = statusEvent('delivered', { messageId: locked.messageId });
  const other = statusEvent('sent');
  await expect(Promise.all([recorder.record(delivered), recorder.record(other)])).resolves.toEqual([
    'recorded',
    'recorded',
  ]);
  expect(recorder.stats().spooled - spooledBefore).toBe(2);

  // Well within the lock's life: the other message is stored, the locked event is retried.
  await eventually(
    async () => (await storedStatus(other.messageId)) === 'sent',
    'the other message’s spooled event stored while the lock is held',
    10_000,
  );
  await eventually(
    () => recorder.status().spool.retrying === '55P03',
    '/readyz saying the replay retries a lock wait',
    10_000,
  );
  // Past several replay timeouts: nothing of ours is left queued on the lock but the current try.
  await new Promise((resolve) => setTimeout(resolve, 2 * REPLAY_TIMEOUT_MS + 500));
  expect(await backendsWaitingOnLock(database.url)).toBeLessThanOrEqual(1);
  expect(await storedStatus(locked.messageId)).toBe('sent');

  // The operator lets go: the locked event is stored and the spool empties.
  await operator.query('ROLLBACK');
  await eventually(
    async () => (await storedStatus(locked.messageId)) === 'delivered',
    'the locked message’s event stored once the lock is released',
    10_000,
  );
  await eventually(() => recorder.mode() === 'direct', 'writing directly again', 10_000);
  expect(recorder.status().spool.depth).toBe(0);
});
