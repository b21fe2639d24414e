import type { Config } from '../config';
import type { Db } from '../db/database';
import type { Logger } from '../logger';
import type { RecordOptions } from '../messages/record-events';
import { createGroupCommitRecorder } from './group-commit-recorder';
import type { GroupCommitOptions, GroupCommitRecorder } from './group-commit-recorder';
import { InstanceLockedError, describeHolder } from '../process/instance-lock';
import { StartupError } from '../process/startup-error';
import { openSpool } from './spool';
import type { Spool, SpoolOptions } from './spool';

/**
 * The production ingest path: group commit in front of PostgreSQL, the outage spool
 * (opened by the caller with openSpool, so metrics can read `spool.depth()`) behind it.
 * Whatever an earlier process left in the spool starts replaying at once.
 */
export function createIngestRecorder(deps: {
  config: Config;
  db: Db;
  logger: Logger;
  spool: Spool;
  recordOptions?: RecordOptions;
  onReplayRefused?: GroupCommitOptions['onReplayRefused'];
  schemaProblem?: GroupCommitOptions['schemaProblem'];
}): GroupCommitRecorder {
  const { config } = deps;
  const recorder = createGroupCommitRecorder({
    db: deps.db,
    logger: deps.logger,
    spool: deps.spool,
    recordOptions: deps.recordOptions,
    onReplayRefused: deps.onReplayRefused,
    schemaProblem: deps.schemaProblem,
    batchMax: config.ingestBatchMax,
    batchWaitMs: config.ingestBatchWaitMs,
    queueMax: config.ingestQueueMax,
    queueMaxBytes: config.ingestQueueMaxBytes,
    maxInFlight: maxInFlightFor(config.databasePoolMax),
    storeBody: config.storeBody,
  });
  recorder.start();
  return recorder;
}

/**
 * Half the pool, at most 4: the rest serves queries, readiness and the replay. Beyond a few
 * concurrent batches PostgreSQL gains nothing on two cores — the batches just grow instead.
 */
export function maxInFlightFor(poolMax: number): number {
  return Math.max(1, Math.min(4, Math.floor(poolMax / 2)));
}

/**
 * The service's spool on SPOOL_DIR. Another live process on the directory is a StartupError
 * naming it: two processes would replay (and delete) each other's segments.
 */
export async function openServiceSpool(options: SpoolOptions): Promise<Spool> {
  try {
    return await openSpool(options);
  } catch (error) {
    if (!(error instanceof InstanceLockedError)) throw error;
    throw new StartupError(
      `SPOOL_DIR ${error.dir} is in use by ${describeHolder(error.holder)}. ` +
        `Stop that process first (Ctrl-C in its terminal, or kill ${error.holder.pid}), or give this one its own SPOOL_DIR.`,
      { cause: error },
    );
  }
}
