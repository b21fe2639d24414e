import { createDb, createReaderDb } from '../../../src/db/database';
import type { DatabaseHandle, ReaderHandle, ReaderOptions } from '../../../src/db/database';
import { migrateToLatest } from '../../../src/db/migrate';
import { createTestApp } from '../../helpers/test-app';
import type { TestApp } from '../../helpers/test-app';
import { createDisposablePostgres } from '../../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../../ingest/support/disposable-postgres';
import { startHotStandby } from './hot-standby';
import type { HotStandby } from './hot-standby';
import { startPartitionProxy } from './partition-proxy';
import type { PartitionProxy } from './partition-proxy';

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
  reader: ReaderHandle;
  /** With `partitionable`: the relay the reader reaches the standby through. */
  proxy?: PartitionProxy;
  t: TestApp;
  close(): Promise<void>;
}

export async function startReplicaStack(
  options: {
    env?: Record<string, string>;
    writerPool?: number;
    /** The reader's checks and timeouts (createReaderDb), shortened by tests. */
    reader?: Omit<ReaderOptions, 'writer'>;
    /** The reader reaches the standby through a relay the test can cut (partition-proxy.ts). */
    partitionable?: boolean;
  } = {},
): Promise<ReplicaStack> {
  const primary = await createDisposablePostgres();
  const writer = createDb(primary.url, options.writerPool ?? 4);
  await migrateToLatest(writer.db);
  const standby = await startHotStandby(primary);
  const proxy = options.partitionable ? await startPartitionProxy(standby.url) : undefined;
  const reader = createReaderDb(proxy?.url ?? standby.url, 4, writer.db, options.reader);
  const t = await createTestApp(options.env ?? {}, {
    database: { ...writer, url: primary.url, destroy: async () => undefined },
    readDb: reader.db,
    readLagSeconds: reader.lagSeconds,
  });
  return {
    primary,
    standby,
    writer,
    reader,
    ...(proxy && { proxy }),
    t,
    async close() {
      // First the relay: it ends the connections a partition left hanging, so the pools close.
      await proxy?.close();
      await t.close();
      await reader.db.destroy();
      await writer.db.destroy();
      await standby.destroy();
      await primary.destroy();
    },
  };
}
