import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitOptions } from '../../src/ingest/group-commit-recorder';
import type { createTestApp } from './test-app';

type AppOptions = NonNullable<Parameters<typeof createTestApp>[1]>;

/**
 * createTestApp's options for a replica that commits callbacks as production does, in groups
 * (src/ingest/group-commit-recorder.ts), with `settings` over these defaults: what tests of
 * several replicas on one database use, passing another app's `database` to the second.
 */
export function withGroupCommit(
  settings: Partial<Omit<GroupCommitOptions, 'db' | 'logger'>> = {},
): AppOptions {
  return {
    recorder: (deps) =>
      createGroupCommitRecorder({
        db: deps.db,
        logger: deps.logger,
        batchMax: 200,
        batchWaitMs: 1,
        queueMax: 5000,
        maxInFlight: 4,
        ...settings,
      }),
  };
}
