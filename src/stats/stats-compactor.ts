import type { Db } from '../db/database';
import type { Logger } from '../logger';
import { foldDeltas } from './stats.repository';

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
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let failing = false;

  const round = async (): Promise<void> => {
    if (paused()) return;
    try {
      await foldDeltas(db);
      if (failing) logger.info('stats rollups: folding deltas again');
      failing = false;
    } catch (error) {
      // The database is away (the ingest path spools meanwhile): try again next round.
      if (!failing) logger.warn({ err: error }, 'stats rollups: could not fold deltas');
      failing = true;
    }
  };
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      timer = null;
      running = round().finally(() => {
        running = null;
        schedule();
      });
    }, intervalMs);
    timer.unref();
  };
  schedule();

  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
