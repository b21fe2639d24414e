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
  let failing = false;

  const round = async (): Promise<void> => {
    if (paused()) return;
    try {
      await foldDeltas(db);
      if (failing) logger.info('stats rollups: folding deltas again');
      failing = false;
    } catch (error) {
      // The database is away (the ingest path spools meanwhile): try again next round. A role
      // whose triggers are off needs an operator: said at error level, once.
      if (!failing && error instanceof TriggersOffError) {
        logger.error(`stats rollups: not folding deltas: ${error.message}`);
      } else if (!failing) logger.warn({ err: error }, 'stats rollups: could not fold deltas');
      failing = true;
    }
  };
  const rounds = startTimedRounds(round, { firstDelayMs: intervalMs, intervalMs });

  return {
    async stop() {
      await rounds.stop();
    },
  };
}
