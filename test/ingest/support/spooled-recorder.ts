import type { StatusEvent } from '../../../src/messages/status-event';
import { statusEvent } from '../../factories';
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
 * (`recorder`, and its logger if it reads the log) and short probe and replay backoff; started
 * (an earlier run's spool replayed).
 */
export async function spooledRecorder(
  db: GroupCommitOptions['db'],
  dir: string,
  recorder: Pick<
    GroupCommitOptions,
    'commitTimeoutMs' | 'replayTimeoutMs' | 'maxInFlight' | 'batchWaitMs'
  > &
    Partial<Pick<GroupCommitOptions, 'replayChunk' | 'logger'>>,
  spool: Partial<Pick<SpoolOptions, 'segmentMaxEvents'>> = {},
): Promise<GroupCommitRecorder> {
  const logger = recorder.logger ?? createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
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

/**
 * Records callbacks, three at a time, until the recorder has gone to its spool, and returns
 * every one recorded (each acknowledged: stored or spooled). A setting that makes commits hang
 * (synchronous_standby_names, reloaded) reaches each session a moment after pg_reload_conf():
 * the first batches may still commit.
 */
export async function recordUntilSpooled(recorder: GroupCommitRecorder): Promise<StatusEvent[]> {
  const recorded: StatusEvent[] = [];
  for (let attempt = 0; attempt < 50 && recorder.mode() !== 'spooling'; attempt++) {
    const events = Array.from({ length: 3 }, () => statusEvent('delivered'));
    const outcomes = await Promise.all(events.map((event) => recorder.record(event)));
    if (outcomes.some((outcome) => outcome !== 'recorded')) {
      throw new Error(`a callback was not recorded: ${outcomes.join(', ')}`);
    }
    recorded.push(...events);
  }
  if (recorder.mode() !== 'spooling') throw new Error('the recorder never went to its spool');
  return recorded;
}
