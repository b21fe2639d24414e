import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * Two sw-status installs in one database, a schema each ("give sw-status a database (or schema)
 * of its own"). Tenant B's concurrent index builds (0006, 0010, 0011, 0014, 0015, 0017) are
 * in progress or were interrupted: its indexes are INVALID. Tenant A's migration Job neither fails
 * on them nor drops them: each migration judges and drops only a leftover in its own table's
 * schema (it failed with 'index "messages_sweep_due_idx" does not exist', found by the diff
 * review).
 */
const BUILT_CONCURRENTLY = [
  ['status_events', 'status_events_message_dedupe_idx'],
  ['relay_jobs', 'relay_jobs_host_due_idx'],
  ['relay_jobs', 'relay_jobs_delivered_idx'],
  ['messages', 'messages_sweep_due_idx'],
  ['messages', 'messages_stuck_created_idx'],
  ['messages', 'messages_api_idx'],
  ['messages', 'messages_api_created_idx'],
] as const;

let target: TestDatabase;

beforeAll(async () => {
  target = await createTestDatabase(2, { migrated: false });
  await sql`CREATE SCHEMA tenant_a`.execute(target.db);
  await sql`CREATE SCHEMA tenant_b`.execute(target.db);
  // Tenant B: indexes of those names left INVALID (a cancelled or running concurrent build).
  for (const [table, index] of BUILT_CONCURRENTLY) {
    await sql`CREATE TABLE IF NOT EXISTS ${sql.raw(`tenant_b.${table}`)} (x int)`.execute(
      target.db,
    );
    await sql`INSERT INTO ${sql.raw(`tenant_b.${table}`)} VALUES (1), (1)`.execute(target.db);
    await sql`CREATE UNIQUE INDEX CONCURRENTLY ${sql.raw(index)} ON ${sql.raw(`tenant_b.${table}`)} (x)`
      .execute(target.db)
      .catch(() => undefined);
  }
});

afterAll(async () => {
  await target?.destroy();
});

function inSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

test('When another schema of the database holds invalid indexes of the names the concurrent builds use, migrating this schema succeeds and leaves them alone', async () => {
  const invalid = async (schema: string) => {
    const { rows } = await sql<{ name: string; valid: boolean }>`
      SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ${schema} AND c.relname = ANY(${BUILT_CONCURRENTLY.map(([, index]) => index)})
      ORDER BY 1`.execute(target.db);
    return rows;
  };
  const leftovers = BUILT_CONCURRENTLY.map(([, name]) => ({ name, valid: false })).sort((x, y) =>
    x.name.localeCompare(y.name),
  );
  expect(await invalid('tenant_b')).toEqual(leftovers);

  const a = createDb(inSchema(target.url, 'tenant_a'), 2);
  let outcome: string;
  try {
    await migrateToLatest(a.db);
    outcome = 'migrated';
  } catch (error) {
    outcome = `failed: ${error instanceof Error ? error.message : String(error)}`;
  } finally {
    await a.db.destroy();
  }
  expect(outcome).toBe('migrated');
  expect(await invalid('tenant_b')).toEqual(leftovers);
  expect(await invalid('tenant_a')).toEqual(leftovers.map(({ name }) => ({ name, valid: true })));
});
