import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createDb, withDatabase } from '../../src/db/database';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres';
import { migrateToLatest } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';

/**
 * The benchmarks' PostgreSQL is configured as a production server for this workload would
 * be (README, "PostgreSQL for sw-status"): the indexes that take random inserts (message ids,
 * dedupe keys, recipients: about 330 bytes per stored event) fit in shared_buffers, and
 * checkpoints are far apart, so that an index page is not written to the WAL in full (a
 * full-page image) at its first change after every checkpoint. PostgreSQL's defaults
 * (128 MB, 1 GB, 5 min) are sized for a laptop. With BENCH_DATABASE_URL, set them yourself.
 */
export const BENCH_POSTGRES_SETTINGS = {
  shared_buffers: '4GB',
  max_wal_size: '8GB',
  checkpoint_timeout: '15min',
} as const;

export interface BenchPostgres {
  /** Where it came from, for the results. */
  source: 'BENCH_DATABASE_URL' | 'embedded';
  /** The server's maintenance database (CPU readings: bench/lib/postgres-cpu.ts). */
  adminUrl: string;
  /**
   * A fresh, migrated, empty database; each scenario run gets its own. With `migrationsDir`,
   * migrated from that directory instead (another checkout's schema, bench/compare-ingest.ts).
   */
  createDatabase(migrationsDir?: string): Promise<string>;
  /** Drops a database made by createDatabase, once its run is over. */
  dropDatabase(url: string): Promise<void>;
  /**
   * Waits until earlier runs' background work is done — autovacuum of the rows they wrote,
   * dirty buffers (CHECKPOINT) — so that it does not land in the next run's measurement.
   * The measured run's own vacuum and checkpoint work still counts.
   */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** BENCH_DATABASE_URL's server, or an embedded PostgreSQL in a temporary directory. */
export async function startBenchPostgres(): Promise<BenchPostgres> {
  const given = process.env.BENCH_DATABASE_URL;
  const dataParent = path.join(os.tmpdir(), `sw-status-bench-pg-${randomBytes(4).toString('hex')}`);
  const embedded = given
    ? undefined
    : await startEmbeddedPostgres(createLogger('warn'), {
        dataDir: path.join(dataParent, 'pg'),
        ephemeral: true,
        settings: BENCH_POSTGRES_SETTINGS,
      }).catch((error: unknown) => {
        // An initdb cut short (Ctrl-C reaches it too) leaves its half-made cluster beside.
        rmSync(dataParent, { recursive: true, force: true });
        throw error;
      });
  const adminUrl = given ?? embedded!.url;
  const suffix = randomBytes(4).toString('hex');
  const template = `sw_status_bench_template_${suffix}`;
  const created: string[] = [];
  try {
    await admin(adminUrl, `CREATE DATABASE ${template}`);
    const handle = createDb(withDatabase(adminUrl, template), 1);
    try {
      await migrateToLatest(handle.db);
    } finally {
      await handle.db.destroy();
    }
  } catch (error) {
    // Nobody gets a server to close: what was made so far goes now.
    await admin(adminUrl, `DROP DATABASE IF EXISTS ${template} WITH (FORCE)`).catch(() => {});
    await embedded?.stop();
    if (embedded) rmSync(dataParent, { recursive: true, force: true });
    throw error;
  }
  let counter = 0;
  return {
    source: given ? 'BENCH_DATABASE_URL' : 'embedded',
    adminUrl,
    async createDatabase(migrationsDir) {
      const name = `sw_status_bench_${suffix}_${++counter}`;
      await admin(
        adminUrl,
        migrationsDir ? `CREATE DATABASE ${name}` : `CREATE DATABASE ${name} TEMPLATE ${template}`,
      );
      created.push(name);
      const url = withDatabase(adminUrl, name);
      if (migrationsDir) {
        const own = createDb(url, 1);
        await migrateToLatest(own.db, migrationsDir);
        await own.db.destroy();
      }
      return url;
    },
    async dropDatabase(url) {
      const name = new URL(url).pathname.slice(1);
      await admin(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      if (created.includes(name)) created.splice(created.indexOf(name), 1);
    },
    settle: () => settlePostgres(adminUrl),
    async close() {
      for (const name of [...created, template]) {
        await admin(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }
      await embedded?.stop();
      if (embedded) rmSync(dataParent, { recursive: true, force: true });
    },
  };
}

/**
 * Waits (up to a minute) until no autovacuum worker runs, then checkpoints: what earlier runs
 * left for the server to do in the background is done before the next measurement.
 */
export async function settlePostgres(adminUrl: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && (await autovacuumWorkers(adminUrl)) > 0) {
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  // Needs superuser or pg_checkpoint on a BENCH_DATABASE_URL server; without, skip it.
  await admin(adminUrl, 'CHECKPOINT').catch(() => undefined);
}

async function autovacuumWorkers(url: string): Promise<number> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'`,
    );
    return rows[0]!.n;
  });
}

async function admin(url: string, statement: string): Promise<void> {
  await withClient(url, (client) => client.query(statement));
}

/** One connection for the length of `work`, closed whatever happens. */
export async function withClient<T>(url: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
