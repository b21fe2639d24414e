import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createDb, withDatabase } from '../../src/db/database';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres';
import { migrateToLatest } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';

export interface BenchPostgres {
  /** Where it came from, for the results. */
  source: 'BENCH_DATABASE_URL' | 'embedded';
  /** A fresh, migrated, empty database; each scenario run gets its own. */
  createDatabase(): Promise<string>;
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
      });
  const adminUrl = given ?? embedded!.url;
  const suffix = randomBytes(4).toString('hex');
  const template = `sw_status_bench_template_${suffix}`;
  const created: string[] = [];
  await admin(adminUrl, `CREATE DATABASE ${template}`);
  const handle = createDb(withDatabase(adminUrl, template), 1);
  await migrateToLatest(handle.db);
  await handle.db.destroy();
  let counter = 0;
  return {
    source: given ? 'BENCH_DATABASE_URL' : 'embedded',
    async createDatabase() {
      const name = `sw_status_bench_${suffix}_${++counter}`;
      await admin(adminUrl, `CREATE DATABASE ${name} TEMPLATE ${template}`);
      created.push(name);
      return withDatabase(adminUrl, name);
    },
    async close() {
      for (const name of [...created, template]) {
        await admin(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }
      await embedded?.stop();
      if (embedded) rmSync(dataParent, { recursive: true, force: true });
    },
  };
}

async function admin(url: string, statement: string): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}
