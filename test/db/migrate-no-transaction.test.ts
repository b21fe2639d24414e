import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { Client } from 'pg';
import { MIGRATIONS_DIR, migrateToLatest, splitStatements } from '../../src/db/migrate';
import { copyMigrationsBefore } from '../helpers/migrations';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * Migrations marked `--! no-transaction` (src/db/migrate.ts) on a real PostgreSQL: they may
 * build indexes CONCURRENTLY, are recorded like the others, and 0006/0007 run again cleanly
 * after an interrupted concurrent build left an INVALID index behind.
 */

let work: string;
const databases: TestDatabase[] = [];

beforeAll(() => {
  work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-notx-'));
});
afterAll(async () => {
  await Promise.all(databases.map((database) => database.destroy()));
  rmSync(work, { recursive: true, force: true });
});

async function database(poolSize = 2, migrated = true): Promise<TestDatabase> {
  const created = await createTestDatabase(poolSize, { migrated });
  databases.push(created);
  return created;
}

async function indexes(target: TestDatabase, table: string) {
  const { rows } = await sql<{ name: string; valid: boolean }>`
    SELECT c.relname AS name, i.indisvalid AS valid
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = ${table}::regclass ORDER BY 1`.execute(target.db);
  return rows;
}

test('Statements split at semicolons outside quotes, dollar quotes and comments', () => {
  const text = `--! no-transaction
-- a comment; with a semicolon
SELECT 'a;b', "we;ird";
DO $$ BEGIN PERFORM 1; END $$;
/* block; comment */ SELECT $tag$x;y$tag$;
-- trailing comment only
`;
  expect(splitStatements(text).map((s) => s.replace(/\s+/g, ' ').trim())).toEqual([
    `--! no-transaction -- a comment; with a semicolon SELECT 'a;b', "we;ird";`,
    'DO $$ BEGIN PERFORM 1; END $$;',
    '/* block; comment */ SELECT $tag$x;y$tag$;',
  ]);
});

test('When the next migration is marked no-transaction, then it builds an index concurrently, is recorded, and the migrations before it are applied too', async () => {
  // One connection: the one the migration ran on is the one asked afterwards.
  const target = await database(1);
  const dir = mkdtempSync(path.join(work, 'next-'));
  cpSync(MIGRATIONS_DIR, dir, { recursive: true });
  writeFileSync(
    path.join(dir, '9000_transactional.sql'),
    'CREATE TABLE next_things (id int PRIMARY KEY, name text);',
  );
  writeFileSync(
    path.join(dir, '9001_concurrent.sql'),
    `--! no-transaction
SET lock_timeout = '5s';
CREATE INDEX CONCURRENTLY IF NOT EXISTS next_things_name_idx ON next_things (name);`,
  );

  expect(await migrateToLatest(target.db, dir)).toEqual(['9000_transactional', '9001_concurrent']);
  expect(await indexes(target, 'next_things')).toEqual([
    { name: 'next_things_name_idx', valid: true },
    { name: 'next_things_pkey', valid: true },
  ]);
  // The session setting the file made does not outlive it on the pooled connection.
  const { rows } = await sql<{ lock_timeout: string }>`SHOW lock_timeout`.execute(target.db);
  expect(rows[0]!.lock_timeout).toBe('0');
  expect(await migrateToLatest(target.db, dir)).toEqual([]);
});

test('When a concurrent build of 0006 was interrupted and left an INVALID index, then running 0006 and 0007 again rebuilds it and ends in the same schema', async () => {
  // The migrations up to 0007 only, so that later ones do not stand in the way of running
  // 0006 and 0007 again.
  const upTo0007 = copyMigrationsBefore('0008', mkdtempSync(path.join(work, 'upto0007-')));
  const target = await database(2, false);
  await migrateToLatest(target.db, upTo0007);
  const before = await indexes(target, 'status_events');

  // An interrupted CREATE UNIQUE INDEX CONCURRENTLY leaves the index INVALID: here it fails
  // on two copies of one event, as a build cancelled halfway would.
  await sql`DROP INDEX status_events_message_dedupe_idx`.execute(target.db);
  const key = randomBytes(32);
  for (let i = 0; i < 2; i++) {
    await sql`
      INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
        dedupe_key, raw)
      VALUES ('SMdup', 'cxml', 'sent', 'sent', 'callback', now(), ${key}, '{}')`.execute(target.db);
  }
  await expect(
    sql`CREATE UNIQUE INDEX CONCURRENTLY status_events_message_dedupe_idx
        ON status_events (message_id, dedupe_key)`.execute(target.db),
  ).rejects.toThrow(/could not create unique index/);
  expect(await indexes(target, 'status_events')).toContainEqual({
    name: 'status_events_message_dedupe_idx',
    valid: false,
  });
  await sql`DELETE FROM status_events WHERE message_id = 'SMdup' AND seq = (
    SELECT max(seq) FROM status_events WHERE message_id = 'SMdup')`.execute(target.db);
  // As if the crash came before either was recorded.
  await sql`DELETE FROM kysely_migration WHERE name >= '0006'`.execute(target.db);

  expect(await migrateToLatest(target.db, upTo0007)).toEqual([
    '0006_event_dedupe_per_message',
    '0007_drop_unused_indexes',
  ]);
  expect(await indexes(target, 'status_events')).toEqual(before);
  expect(before).toContainEqual({ name: 'status_events_message_dedupe_idx', valid: true });
  expect(before.map((index) => index.name)).not.toContain('status_events_dedupe_key_key');
  expect(before.map((index) => index.name)).not.toContain('status_events_message_idx');
});

test('When a transaction older than the build runs past lock_timeout (a backup, a long report), then the concurrent build waits for it instead of failing', async () => {
  const target = await database();
  // 0010's build anew, as after an interrupted run.
  await sql`DROP INDEX relay_jobs_host_due_idx`.execute(target.db);
  // With the files after it (the runner applies files in order), undone.
  await sql`DELETE FROM kysely_migration WHERE name >= '0010_relay_jobs_host_idx'`.execute(
    target.db,
  );
  await sql`DROP TABLE relay_hosts`.execute(target.db);
  // A snapshot taken before the build, held 6 s (0010 sets lock_timeout to 5 s for its DROP),
  // in a transaction that reads another table only.
  const reader = new Client({ connectionString: target.url });
  await reader.connect();
  try {
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await reader.query('SELECT count(*) FROM messages');
    const release = new Promise((resolve) => setTimeout(resolve, 6_000)).then(() =>
      reader.query('COMMIT'),
    );
    expect(await migrateToLatest(target.db)).toEqual([
      '0010_relay_jobs_host_idx',
      '0011_relay_jobs_delivered_idx',
      '0012_relay_hosts',
      '0013_feed_removal_steps',
      '0014_messages_sweep_due_idx',
      '0015_messages_stuck_created_idx',
      '0016_feed_epoch',
      '0017_messages_api_idx',
      '0018_stats_rollups_search_path',
    ]);
    await release;
  } finally {
    await reader.end();
  }
  expect(await indexes(target, 'relay_jobs')).toContainEqual({
    name: 'relay_jobs_host_due_idx',
    valid: true,
  });
}, 30_000);
