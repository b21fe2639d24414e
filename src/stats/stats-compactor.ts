import type { Db } from '../db/database';
import type { Logger } from '../logger';
import { startTimedRounds } from '../process/timed-rounds';
import { foldDeltas, TriggersOffError } from './stats.repository';

/**
 * Folds the stats deltas the write path appends into the minute and hour rollups every few
 * seconds, so a stats query reads a few rows per hour instead of one per batch. Every replica
 * runs it; an advisory lock lets one at a time do the work. Started and stopped by main.ts.
 */
export interface StatsCompactor {
  stop(): Promise<void>;
}

export function startStatsCompactor({
  db,
  logger,
  intervalMs = 5_000,
  paused = () => false,
}: {
  db: Db;
  logger: Logger;
  intervalMs?: number;
  /** True while the schema is not this release's (DatabaseReadiness.schemaSuitable): no round. */
  paused?: () => boolean;
}): StatsCompactor {
  // What the last round failed on, said once each time it changes: the database away (a
  // warning, tried again next round), or a role whose triggers are off (an error: it needs an
  // operator). An outage that comes first must not hide the second.
  let failing: 'unavailable' | 'triggers-off' | null = null;

  const round = async (): Promise<void> => {
    if (paused()) return;
    try {
      await foldDeltas(db);
      if (failing) logger.info('stats rollups: folding deltas again');
      failing = null;
    } catch (error) {
      const now = error instanceof TriggersOffError ? 'triggers-off' : 'unavailable';
      if (now !== failing) {
        if (now === 'triggers-off') {
          logger.error(`stats rollups: not folding deltas: ${(error as Error).message}`);
        } else logger.warn({ err: error }, 'stats rollups: could not fold deltas');
      }
      failing = now;
    }
  };
  const rounds = startTimedRounds(round, { firstDelayMs: intervalMs, intervalMs });

  return {
    async stop() {
      await rounds.stop();
    },
  };
}
