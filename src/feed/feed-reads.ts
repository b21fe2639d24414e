import type { Db } from '../db/database';
import type { FeedPosition } from './feed-cursor';
import { feedEnd, readFeedPage } from './feed.repository';
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
 *
 * A read whose consumer went away (`abort`) while it waited for its turn is left: it answers
 * undefined at once, and a queued read nobody waits for any more is not run — consumers that
 * give up on a long queue (a proxy's timeout) must not lengthen it with reads for nobody.
 */
export interface FeedReads {
  read(
    after: FeedPosition,
    filter: FeedFilter,
    limit: number,
    scanLimit: number,
    abort?: AbortSignal,
  ): Promise<FeedPage | undefined>;
  /**
   * The feed's current end (`after=now`), in the same line as the pages: a burst of consumers
   * starting at once (every dashboard after a deploy) costs one statement per turn, not one
   * queued on the pool each.
   */
  end(abort?: AbortSignal): Promise<FeedPosition | undefined>;
}

interface Settle {
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

interface Queued {
  key: string;
  run: () => Promise<unknown>;
  settle: Settle[];
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
          (value) => {
            for (const { resolve } of next.settle) resolve(value);
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

  /** `run` in its turn, or the queued read of the same `key` joined; undefined once aborted. */
  function enqueue<T>(key: string, run: () => Promise<T>, abort?: AbortSignal) {
    if (abort?.aborted) return Promise.resolve(undefined);
    return new Promise<T | undefined>((resolve, reject) => {
      const settle: Settle = {
        resolve: (value) => {
          abort?.removeEventListener('abort', onAbort);
          resolve(value as T);
        },
        reject: (error) => {
          abort?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      const joined = waiting.get(key);
      const entry: Queued = joined ?? { key, run, settle: [] };
      entry.settle.push(settle);
      if (!joined) {
        queue.push(entry);
        waiting.set(key, entry);
      }
      function onAbort(): void {
        // Running already (no longer waiting): its answer comes as usual.
        if (waiting.get(key) !== entry) return;
        entry.settle.splice(entry.settle.indexOf(settle), 1);
        if (entry.settle.length === 0) {
          queue.splice(queue.indexOf(entry), 1);
          waiting.delete(key);
        }
        resolve(undefined);
      }
      abort?.addEventListener('abort', onAbort, { once: true });
      startNext();
    });
  }

  return {
    read(after, filter, limit, scanLimit, abort) {
      const key = JSON.stringify([
        after.tx,
        after.seq,
        filter.statuses ?? null,
        filter.apis ?? null,
        limit,
        scanLimit,
      ]);
      return enqueue(key, () => readFeedPage(db, after, filter, limit, scanLimit), abort);
    },
    end(abort) {
      // Joined only while it waits, as a page: a read that started before a consumer asked
      // may be older than that consumer's own commit.
      return enqueue('end', () => feedEnd(db), abort);
    },
  };
}
