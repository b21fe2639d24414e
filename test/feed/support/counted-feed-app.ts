import { createDb } from '../../../src/db/database';
import type { DatabaseHandle } from '../../../src/db/database';
import { migrateToLatest } from '../../../src/db/migrate';
import { createTestApp } from '../../helpers/test-app';
import type { TestApp } from '../../helpers/test-app';
import { createDisposablePostgres } from '../../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../../ingest/support/disposable-postgres';

/**
 * The service on a PostgreSQL of its own, its feed reading through a pool whose statements are
 * counted (as with DATABASE_READ_URL). Of its own because the feed reads below the oldest
 * transaction open anywhere on the cluster: other test files' transactions on a shared one
 * would hold new events back at random and change what a look finds, and how many looks.
 */
export interface CountedFeedApp {
  t: TestApp;
  /** The primary's pool, for writing test data. */
  writer: DatabaseHandle;
  reads: { statements: number; inUse: number; mostInUse: number };
  close(): Promise<void>;
}

export async function startCountedFeedApp(
  options: { feedPollMs?: number } = {},
): Promise<CountedFeedApp> {
  const primary: DisposablePostgres = await createDisposablePostgres();
  const writer = createDb(primary.url, 4);
  await migrateToLatest(writer.db);
  const reader = createDb(primary.url, 10);
  const reads = { statements: 0, inUse: 0, mostInUse: 0 };
  reader.pool.on('acquire', () => {
    reads.statements += 1;
    reads.mostInUse = Math.max(reads.mostInUse, ++reads.inUse);
  });
  reader.pool.on('release', () => (reads.inUse -= 1));
  const t = await createTestApp(
    {},
    {
      database: { ...writer, url: primary.url, destroy: async () => undefined },
      readDb: reader.db,
      feedPollMs: options.feedPollMs,
    },
  );
  return {
    t,
    writer,
    reads,
    async close() {
      await t.close();
      await reader.db.destroy();
      await writer.db.destroy();
      await primary.destroy();
    },
  };
}
