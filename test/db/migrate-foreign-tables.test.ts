import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { migrateReachable } from '../../src/db/migrate';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { freePort, serviceEnv, startService } from '../ops/service-process';
import type { ServiceProcess } from '../ops/service-process';

/**
 * A DATABASE_URL left in the shell by another project names a database where another
 * application keeps a table sw-status's first migration would create (`messages`): npm start
 * used to end in the driver's stack trace, with kysely_migration left behind in that database.
 */

jest.setTimeout(60_000);

const databases: TestDatabase[] = [];
const running: ServiceProcess[] = [];
const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'sw-status-foreign-tables-'));
afterAll(async () => {
  await Promise.all(running.map((service) => service.kill()));
  rmSync(spoolDir, { recursive: true, force: true });
  await Promise.all(databases.map((database) => database.destroy()));
});

/** An unmigrated database where another application keeps its own `messages` table. */
async function anotherApplicationsDatabase(): Promise<TestDatabase> {
  const other = await createTestDatabase(1, { migrated: false });
  databases.push(other);
  await sql`CREATE TABLE messages (id serial PRIMARY KEY, text text)`.execute(other.db);
  return other;
}

async function leftBehind(database: TestDatabase): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`.execute(
    database.db,
  );
  return rows.map((row) => row.name);
}

test('When DATABASE_URL in the shell names a database where another application keeps a `messages` table, then npm start exits 1 with one line naming the clash, not a driver stack trace', async () => {
  const other = await anotherApplicationsDatabase();
  const service = startService(
    serviceEnv(other.url, {
      NODE_ENV: 'development',
      SPOOL_DIR: path.join(spoolDir, 'spool'),
      PORT: String(await freePort()),
      INTERNAL_PORT: String(await freePort()),
    }),
  );
  running.push(service);
  const { code } = await service.exited;
  const said = service.stderr().trim();
  expect({ code, lines: said.split('\n').length }).toEqual({ code: 1, lines: 1 });
  expect(said).toContain('already holds a table "messages" that is not sw-status\'s');
  expect(said).toContain(new URL(other.url).pathname.slice(1)); // the database, by name
});

test('When the migrations are refused for another application’s `messages` table, then nothing of sw-status’s is left in that database', async () => {
  const other = await anotherApplicationsDatabase();
  await expect(migrateReachable(other.db, other.url)).rejects.toThrow(
    /already holds a table "messages"/,
  );
  expect(await leftBehind(other)).toEqual(['messages']);
});

test('When sw-status’s own installation is migrated again, then its `messages` table is no clash', async () => {
  const own = await createTestDatabase(1, { migrated: false });
  databases.push(own);
  await migrateReachable(own.db, own.url);
  await expect(migrateReachable(own.db, own.url)).resolves.toEqual([]);
});
