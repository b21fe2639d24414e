import { sql } from 'kysely';
import { Client } from 'pg';
import { createDb } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * An operator's shorter lock_timeout or statement_timeout on the service's role or database
 * (README: the service honours them) reaches the migration Job too, which connects with the
 * same DATABASE_URL. The concurrent index builds (0006, 0010, 0011) must still wait for a
 * transaction older than them (a backup, a long report) rather than be cancelled: their files
 * used to `RESET lock_timeout`, which returns to that default, and nothing lifted
 * statement_timeout, so the Job failed while the backup ran and the rollout stopped.
 */
const FROM_0010 = ['0010_relay_jobs_host_idx', '0011_relay_jobs_delivered_idx', '0012_relay_hosts'];

const databases: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(databases.map((database) => database.destroy()));
});

async function at0009(): Promise<TestDatabase> {
  const target = await createTestDatabase(1);
  databases.push(target);
  // 0010 onwards undone, as on a store last migrated by the release before 0010.
  await sql`DROP INDEX relay_jobs_host_due_idx`.execute(target.db);
  await sql`DROP INDEX relay_jobs_delivered_idx`.execute(target.db);
  await sql`DROP TABLE relay_hosts`.execute(target.db);
  await sql`DELETE FROM kysely_migration WHERE name >= '0010'`.execute(target.db);
  return target;
}

async function migrateBehindLongReport(target: TestDatabase, setting: string): Promise<unknown> {
  const name = new URL(target.url).pathname.slice(1);
  // The operator's default for the service's database (README: "a shorter lock_timeout or
  // statement_timeout of yours on the role" — the database's works the same and needs no role).
  await sql.raw(`ALTER DATABASE ${name} SET ${setting}`).execute(target.db);
  const migrator = createDb(target.url, 1); // new sessions: they pick up the default
  const report = new Client({ connectionString: target.url });
  await report.connect();
  try {
    // A long report (a backup): a snapshot older than the build, held 6 s, on another table.
    await report.query('SET statement_timeout = 0; SET lock_timeout = 0');
    await report.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await report.query('SELECT count(*) FROM messages');
    const done = new Promise((resolve) => setTimeout(resolve, 6_000)).then(() =>
      report.query('COMMIT'),
    );
    const outcome = await migrateToLatest(migrator.db).then(
      (applied) => applied,
      (error: unknown) => error,
    );
    await done;
    return outcome;
  } finally {
    await report.end();
    await migrator.db.destroy();
  }
}

test("When the database's default lock_timeout is 1 s (honoured by the service), then the concurrent index builds still wait for a long report instead of failing", async () => {
  const target = await at0009();
  const outcome = await migrateBehindLongReport(target, "lock_timeout = '1s'");
  expect(outcome).toEqual(expect.arrayContaining(FROM_0010));
}, 30_000);

test("When the database's default statement_timeout is 2 s, then the concurrent index builds still wait for a long report instead of failing", async () => {
  const target = await at0009();
  const outcome = await migrateBehindLongReport(target, "statement_timeout = '2s'");
  expect(outcome).toEqual(expect.arrayContaining(FROM_0010));
}, 30_000);
