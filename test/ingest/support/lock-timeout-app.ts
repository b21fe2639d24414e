import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createDb } from '../../../src/db/database';
import { createGroupCommitRecorder } from '../../../src/ingest/group-commit-recorder';
import type {
  GroupCommitOptions,
  GroupCommitRecorder,
} from '../../../src/ingest/group-commit-recorder';
import { openSpool } from '../../../src/ingest/spool';
import { createLogger } from '../../../src/logger';
import { createTestApp } from '../../helpers/test-app';
import type { TestApp } from '../../helpers/test-app';

export interface LockTimeoutApp {
  t: TestApp;
  recorder: GroupCommitRecorder;
  close(): Promise<void>;
}

/**
 * The public app whose recorder's sessions run under an operator's `lock_timeout` (set on the
 * connection, as one set on the role or database would be), shorter than its commit timeout,
 * with a spool in a directory of its own; one batch commits at a time.
 */
export async function lockTimeoutApp(options: {
  lockTimeoutMs: number;
  commitTimeoutMs: number;
  /** The recorder's transactional write (default: the real one). */
  write?: GroupCommitOptions['write'];
}): Promise<LockTimeoutApp> {
  const spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-lock-timeout-'));
  const spool = await openSpool({
    dir: spoolDir,
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
  });
  let recorder!: GroupCommitRecorder;
  let recorderDb: ReturnType<typeof createDb> | undefined;
  const t = await createTestApp(
    { RATE_LIMIT_PUBLIC_PER_MINUTE: '1000000' },
    {
      recorder: (deps, database) => {
        const url = new URL(database.url);
        url.searchParams.set('options', `-c lock_timeout=${options.lockTimeoutMs}`);
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
          commitTimeoutMs: options.commitTimeoutMs,
          replayBackoffMs: { initial: 50, max: 200 },
          write: options.write,
        });
        return recorder;
      },
    },
  );
  return {
    t,
    recorder,
    async close() {
      await t.close();
      await recorder.drain();
      await recorderDb?.db.destroy();
      await rm(spoolDir, { recursive: true, force: true });
    },
  };
}
