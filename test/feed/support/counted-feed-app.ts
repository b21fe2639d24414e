import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDb } from '../../../src/db/database';
import { createFastServer } from '../../../src/http/fast-server';
import type { DatabaseHandle } from '../../../src/db/database';
import { migrateToLatest } from '../../../src/db/migrate';
import { TEST_API_TOKEN, createTestApp } from '../../helpers/test-app';
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

/**
 * The internal app on a real socket, for many requests at once (long-polls that wait
 * together), with a GET that sends the test token.
 */
export async function listenInternal(t: TestApp): Promise<{
  get(path: string): Promise<{ status: number; body: Record<string, unknown> }>;
  close(): Promise<void>;
}> {
  const server: Server = createFastServer(t.internalApp);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    async get(path) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
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
