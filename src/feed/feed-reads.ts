import type { Db } from '../db/database';
import type { FeedPosition } from './feed-cursor';
import { readFeedPage } from './feed.repository';
import type { FeedFilter, FeedPage } from './feed.repository';

/**
 * The change feed's page reads, bounded and shared. Every commit wakes every waiting long-poll
 * (feed-signal.ts), and each would read a page at once: with hundreds of consumers on one
 * replica that is hundreds of statements queued for the pool — without DATABASE_READ_URL the
 * very pool the callbacks' commits take their connections from, so an acknowledgement would
 * wait behind them.
 *
 * So at most `concurrency` page reads run at once per process, and a read asked for while an
 * identical one (same position, filters, limit) still waits for its turn joins it instead of
 * queueing a second: consumers that are caught up all stand at the same position, so a commit
 * costs a few statements however many of them wait. A read already running is never joined:
 * it may have taken its snapshot before the commit that woke the new asker, which would then
 * be answered without the event it was woken for. Joiners share one page: it is read-only.
 */
export interface FeedReads {
  read(
    after: FeedPosition,
    filter: FeedFilter,
    limit: number,
    scanLimit: number,
  ): Promise<FeedPage>;
}

interface Queued {
  key: string;
  run: () => Promise<FeedPage>;
  settle: Array<{ resolve: (page: FeedPage) => void; reject: (error: unknown) => void }>;
}

export function createFeedReads(db: Db, concurrency: number): FeedReads {
  let running = 0;
  const queue: Queued[] = [];
  // The queued (not yet running) read of each key.
  const waiting = new Map<string, Queued>();

  const startNext = (): void => {
    while (running < concurrency && queue.length > 0) {
      const next = queue.shift()!;
      waiting.delete(next.key);
      running++;
      next
        .run()
        .then(
          (page) => {
            for (const { resolve } of next.settle) resolve(page);
          },
          (error: unknown) => {
            for (const { reject } of next.settle) reject(error);
          },
        )
        .finally(() => {
          running--;
          startNext();
        });
    }
  };

  return {
    read(after, filter, limit, scanLimit) {
      const key = JSON.stringify([
        after.tx,
        after.seq,
        filter.statuses ?? null,
        filter.apis ?? null,
        limit,
        scanLimit,
      ]);
      return new Promise<FeedPage>((resolve, reject) => {
        const joined = waiting.get(key);
        if (joined) {
          joined.settle.push({ resolve, reject });
          return;
        }
        const entry: Queued = {
          key,
          run: () => readFeedPage(db, after, filter, limit, scanLimit),
          settle: [{ resolve, reject }],
        };
        queue.push(entry);
        waiting.set(key, entry);
        startNext();
      });
    },
  };
}
