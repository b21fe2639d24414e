import path from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import { Pool } from 'pg';
import type { Database } from '../../src/db/database';
import { withDatabase } from '../../src/db/database';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres';
import { migrateToLatest } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { generateEvents } from '../../scripts/generate-events';
import { BENCH_POSTGRES_SETTINGS, withClient } from './database';

/**
 * The store of `npm run bench:scale` and the probes that reuse it: `events` status events in
 * the database sw_status_scale_<events>, on BENCH_DATABASE_URL or else an embedded PostgreSQL
 * whose data directory (.data/scale-postgres) is kept for the next run. Loaded with COPY
 * (scripts/generate-events.ts) unless it already holds them; a store an earlier release loaded
 * gets this release's migrations first, as a production rollout would.
 */
export interface ScaleStore {
  /** An admin connection to the server (other databases are made there). */
  adminUrl: string;
  /** The store's database. */
  url: string;
  load: { reused: true; events: number } | ({ reused: false } & LoadResult);
  stop(): Promise<void>;
}

type LoadResult = Awaited<ReturnType<typeof generateEvents>>;

export async function openScaleStore(
  events: number,
  log: (line: string) => void,
): Promise<ScaleStore> {
  const embedded = process.env.BENCH_DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres(createLogger('warn'), {
        dataDir: path.resolve('.data', 'scale-postgres'),
        settings: BENCH_POSTGRES_SETTINGS,
      });
  const adminUrl = process.env.BENCH_DATABASE_URL ?? embedded!.url;
  const stop = async () => {
    await embedded?.stop();
  };
  try {
    const name = `sw_status_scale_${events}`;
    const url = withDatabase(adminUrl, name);
    const load = await ensureLoaded(adminUrl, name, url, events, log);
    return { adminUrl, url, load, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function ensureLoaded(
  adminUrl: string,
  name: string,
  url: string,
  events: number,
  log: (line: string) => void,
): Promise<ScaleStore['load']> {
  const exists = await withClient(
    adminUrl,
    async (admin) =>
      (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount,
  );
  if (exists) {
    const count = await withClient(url, async (client) =>
      Number(
        (await client.query<{ n: string }>('SELECT count(*) AS n FROM status_events')).rows[0]!.n,
      ),
    );
    if (count >= events) {
      const started = Date.now();
      await migrate(url);
      log(
        `reusing ${name}: ${count.toLocaleString('en')} events; migrations applied in ${Math.round((Date.now() - started) / 100) / 10} s`,
      );
      return { reused: true, events: count };
    }
  }
  await recreate(adminUrl, name);
  await migrate(url);
  log(`loading ${events.toLocaleString('en')} events with COPY…`);
  const result = await generateEvents(url, events, (line) => log(`  ${line}`));
  log(
    `loaded ${result.events.toLocaleString('en')} events, ${result.messages.toLocaleString('en')} messages in ${result.seconds} s`,
  );
  return { reused: false, ...result };
}

/** Drops and creates an empty database `name`. */
export async function recreate(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, async (admin) => {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  });
}

/** This release's migrations on the database at `url`. */
export async function migrate(url: string): Promise<void> {
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: new Pool({ connectionString: url, max: 1 }) }),
  });
  await migrateToLatest(db);
  await db.destroy();
}
