import { createGroupCommitRecorder } from '../../../src/ingest/group-commit-recorder';
import type {
  GroupCommitOptions,
  GroupCommitRecorder,
} from '../../../src/ingest/group-commit-recorder';
import { openSpool } from '../../../src/ingest/spool';
import type { SpoolOptions } from '../../../src/ingest/spool';
import { createLogger } from '../../../src/logger';

/**
 * A recorder on the spool in `dir`, as the service runs one, with the time limits a test sets
 * (`recorder`) and short probe and replay backoff; started (an earlier run's spool replayed).
 */
export async function spooledRecorder(
  db: GroupCommitOptions['db'],
  dir: string,
  recorder: Pick<
    GroupCommitOptions,
    'commitTimeoutMs' | 'replayTimeoutMs' | 'maxInFlight' | 'batchWaitMs'
  > &
    Partial<Pick<GroupCommitOptions, 'replayChunk'>>,
  spool: Partial<Pick<SpoolOptions, 'segmentMaxEvents'>> = {},
): Promise<GroupCommitRecorder> {
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const started = createGroupCommitRecorder({
    db,
    logger,
    spool: await openSpool({ dir, logger, ...spool }),
    batchMax: 50,
    queueMax: 1_000,
    probeIntervalMs: 100,
    replayBackoffMs: { initial: 100, max: 500 },
    ...recorder,
  });
  started.start();
  return started;
}
