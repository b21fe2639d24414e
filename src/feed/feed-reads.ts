import type { Db } from '../db/database';
import { createReadGate } from '../db/read-gate';
import { READ_STATEMENT_TIMEOUT_MS } from '../db/read-timeout';
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
 *
 * A read waits for its turn `maxWaitMs` at most (by default as long as the other query API
 * reads, app.ts), then answers 503 + Retry-After with every consumer joined to it: when the
 * reads hold their turns far longer than usual (a replica that stopped answering holds each
 * until the reader pool's query timeout, db/database.ts) a `wait=0` request, or an
 * `after=now`, is not left queueing for as long as that lasts.
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

export function createFeedReads(
  db: Db,
  concurrency: number,
  maxWaitMs = READ_STATEMENT_TIMEOUT_MS,
): FeedReads {
  // The turns: at most `concurrency` reads at once, the others in order (db/read-gate.ts).
  const gate = createReadGate({ concurrency, maxWaitMs });
  // The queued (not yet running) read of each key, with the consumers waiting for it.
  const waiting = new Map<string, Settle[]>();

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
      const settles = joined ?? [];
      settles.push(settle);
      if (!joined) {
        waiting.set(key, settles);
        gate
          .run(
            () => {
              // From its turn on, it is no longer joined.
              if (waiting.get(key) === settles) waiting.delete(key);
              return run();
            },
            // Every consumer of it went away while it waited: the turn passes, unread.
            () => settles.length === 0,
          )
          .then(
            (value) => {
              for (const { resolve } of settles) resolve(value);
            },
            (error: unknown) => {
              // Refused before its turn (the wait limit): nobody may join it any more.
              if (waiting.get(key) === settles) waiting.delete(key);
              for (const { reject } of settles) reject(error);
            },
          );
      }
      function onAbort(): void {
        // Running already (no longer waiting): its answer comes as usual.
        if (waiting.get(key) !== settles) return;
        settles.splice(settles.indexOf(settle), 1);
        if (settles.length === 0) waiting.delete(key);
        resolve(undefined);
      }
      abort?.addEventListener('abort', onAbort, { once: true });
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
