import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';

/**
 * An operator's lock_timeout on the service's role or database, shorter than the live commit
 * timeout (managed PostgreSQL guides recommend a second or so), while `messages` is locked
 * (LOCK TABLE, an ALTER TABLE waiting for its lock, VACUUM FULL). The batch fails with 55P03
 * at once, which looks like one poisoned event: the recorder retries each event alone. Every
 * one of them then fails alike, one after the other, each given a commit timeout of its own:
 * the last of a batch was answered many seconds after SignalWire (5 s) had given up, and none
 * was spooled although a spool was there to keep them. The fallback now has what is left of
 * the batch's commit timeout; the rest is spooled.
 */

jest.setTimeout(60_000);

const COMMIT_TIMEOUT_MS = 1_000;
const ROLE_LOCK_TIMEOUT_MS = 200;
const CALLBACKS = 30;

let t: TestApp;
let recorder: GroupCommitRecorder;
let recorderDb: DatabaseHandle;
let spoolDir: string;

beforeAll(async () => {
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-fallback-deadline-'));
  const spool = await openSpool({
    dir: spoolDir,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
  });
  t = await createTestApp(
    { RATE_LIMIT_PUBLIC_PER_MINUTE: '1000000' },
    {
      recorder: (deps, database) => {
        const url = new URL(database.url);
        url.searchParams.set('options', `-c lock_timeout=${ROLE_LOCK_TIMEOUT_MS}`);
        recorderDb = createDb(url.toString(), 4);
        recorder = createGroupCommitRecorder({
          db: recorderDb.db,
          logger: deps.logger,
          spool,
          batchMax: 100,
          batchWaitMs: 20,
          queueMax: 1_000,
          maxInFlight: 1,
          probeIntervalMs: 100,
          commitTimeoutMs: COMMIT_TIMEOUT_MS,
          replayBackoffMs: { initial: 50, max: 200 },
        });
        return recorder;
      },
    },
  );
});

afterAll(async () => {
  await t?.close();
  await recorder?.drain();
  await recorderDb?.db.destroy();
  if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
});

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
  // A few are refused (503, SignalWire retries) while the batch's time lasts; the rest are kept.
  for (const { status } of answers) expect([200, 503]).toContain(status);
  const acknowledged = answers.filter((answer) => answer.status === 200).map(({ id }) => id);
  expect(acknowledged.length).toBeGreaterThanOrEqual(
    CALLBACKS - COMMIT_TIMEOUT_MS / ROLE_LOCK_TIMEOUT_MS,
  );

  await eventually(async () => {
    const { rows } = await t.database.pool.query<{ n: number }>(
      'SELECT count(DISTINCT message_id)::int AS n FROM status_events WHERE message_id = ANY($1)',
      [acknowledged],
    );
    return rows[0]!.n === acknowledged.length;
  }, 'every acknowledged callback stored once the lock is gone');
});
