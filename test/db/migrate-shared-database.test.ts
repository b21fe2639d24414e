import { sql } from 'kysely';
import { knownMigrations, migrateToLatest } from '../../src/db/migrate';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A database shared with another application that also migrates with Kysely, in a schema of
 * its own (`billing`): sw-status in `public`, as DATABASE_URL's default search_path puts it.
 * Kysely's Migrator decides whether `kysely_migration` exists by looking in every schema the
 * role may use, then reads it unqualified through search_path: a fresh install found the other
 * application's table, created none of its own, and failed. The migrator now names the schema.
 */

const databases: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(databases.map((database) => database.destroy()));
});

test('When another application keeps its kysely_migration in a schema of its own, then a fresh sw-status database still migrates', async () => {
  const target = await createTestDatabase(1, { migrated: false });
  databases.push(target);
  await sql`CREATE SCHEMA billing`.execute(target.db);
  await sql`CREATE TABLE billing.kysely_migration (name varchar(255) PRIMARY KEY, timestamp varchar(255) NOT NULL)`.execute(
    target.db,
  );
  await sql`INSERT INTO billing.kysely_migration VALUES ('2024_01_invoices', '2024-01-01T00:00:00Z')`.execute(
    target.db,
  );

  await expect(migrateToLatest(target.db)).resolves.toEqual(await knownMigrations());
  // The other application's record is untouched, and sw-status's are in its own schema.
  const { rows } = await sql<{ schema: string; n: number }>`
    SELECT 'billing' AS schema, count(*)::int AS n FROM billing.kysely_migration
    UNION ALL SELECT 'public', count(*)::int FROM public.kysely_migration`.execute(target.db);
  expect(rows).toEqual([
    { schema: 'billing', n: 1 },
    { schema: 'public', n: (await knownMigrations()).length },
  ]);
});

// An existing install keeps its history where it was created: public, with the default
// search_path ("$user", public). A schema named after the role created later (PostgreSQL's
// recommended "secure schema usage pattern": CREATE SCHEMA AUTHORIZATION <role>) becomes
// current_schema(): the migrator must still find public's history, not apply every migration
// again into the new schema, where the service (reading unqualified names) would see an empty
// database.
test("When a schema named after the role appears after install (search_path's first), then migrating again applies nothing and the data stays visible", async () => {
  const target = await createTestDatabase(1);
  databases.push(target);
  await sql`INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at, last_event_at)
            VALUES ('SM-kept', 'cxml', 'queued', 'queued', 0, now(), now())`.execute(target.db);
  const user = (await sql<{ u: string }>`SELECT current_user AS u`.execute(target.db)).rows[0]!.u;
  await sql.raw(`CREATE SCHEMA "${user}"`).execute(target.db);

  const applied = await migrateToLatest(target.db);
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM messages`.execute(
    target.db,
  );
  expect({ applied, visibleMessages: rows[0]!.n }).toEqual({ applied: [], visibleMessages: 1 });
});

// PostgreSQL's secure schema usage pattern from the start: the role's own schema is
// search_path's first, and another application keeps its kysely_migration in public. A fresh
// install creates its history in its own schema, not in the other application's table.
test('When the role has a schema of its own and another application keeps kysely_migration in public, then a fresh sw-status install still migrates into its own schema', async () => {
  const target = await createTestDatabase(1, { migrated: false });
  databases.push(target);
  await sql`CREATE TABLE public.kysely_migration (name varchar(255) PRIMARY KEY, timestamp varchar(255) NOT NULL)`.execute(
    target.db,
  );
  await sql`INSERT INTO public.kysely_migration VALUES ('2024_01_invoices', '2024-01-01T00:00:00Z')`.execute(
    target.db,
  );
  const user = (await sql<{ u: string }>`SELECT current_user AS u`.execute(target.db)).rows[0]!.u;
  await sql.raw(`CREATE SCHEMA "${user}"`).execute(target.db);

  await expect(migrateToLatest(target.db)).resolves.toEqual(await knownMigrations());
  const { rows } = await sql<{
    n: number;
  }>`SELECT count(*)::int AS n FROM public.kysely_migration`.execute(target.db);
  // The other application's history is untouched.
  expect(rows[0]!.n).toBe(1);
});
