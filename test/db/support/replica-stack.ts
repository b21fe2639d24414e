import { createDb, createReaderDb } from '../../../src/db/database';
import type { DatabaseHandle } from '../../../src/db/database';
import { migrateToLatest } from '../../../src/db/migrate';
import { createTestApp } from '../../helpers/test-app';
import type { TestApp } from '../../helpers/test-app';
import { createDisposablePostgres } from '../../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../../ingest/support/disposable-postgres';
import { startHotStandby } from './hot-standby';
import type { HotStandby } from './hot-standby';

/**
 * The service with DATABASE_READ_URL, as the read-replica tests need it: a disposable primary,
 * migrated, a real hot standby streaming from it, and the app writing to the one and reading
 * lists, stats and the feed from the other.
 */
export interface ReplicaStack {
  primary: DisposablePostgres;
  standby: HotStandby;
  /** The primary's pool: the app's own. */
  writer: DatabaseHandle;
  /** The standby's pool: the app's readDb. */
  reader: DatabaseHandle;
  t: TestApp;
  close(): Promise<void>;
}

export async function startReplicaStack(
  options: { env?: Record<string, string>; writerPool?: number } = {},
): Promise<ReplicaStack> {
  const primary = await createDisposablePostgres();
  const writer = createDb(primary.url, options.writerPool ?? 4);
  await migrateToLatest(writer.db);
  const standby = await startHotStandby(primary);
  const reader = createReaderDb(standby.url, 4, writer.db);
  const t = await createTestApp(options.env ?? {}, {
    database: { ...writer, url: primary.url, destroy: async () => undefined },
    readDb: reader.db,
  });
  return {
    primary,
    standby,
    writer,
    reader,
    t,
    async close() {
      await t.close();
      await reader.db.destroy();
      await writer.db.destroy();
      await standby.destroy();
      await primary.destroy();
    },
  };
}
