import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { generateEvents } from '../../scripts/generate-events';
import { createDb, withDatabase } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { migratedBefore } from '../helpers/migrations';
import { asAdmin } from '../helpers/test-database';

/**
 * Migration 0014 (the sweep's index by project, step and age) on a populated store while
 * callbacks keep arriving: the index is built concurrently without stopping ingest (every write
 * succeeds while the migration runs; the
 * longest write is measured and printed), and the new index is valid and holds every sweepable
 * message, those written during the build too. Run again after an interrupted build, it builds
 * the index anew.
 *
 * SW_MIGRATION_TEST_EVENTS sets the size (600,000 events by default).
 */

const EVENTS = Number(process.env.SW_MIGRATION_TEST_EVENTS ?? 600_000);
const adminUrl = () => process.env.SW_TEST_ADMIN_URL!;
const name = `sw_status_test_0014_${randomBytes(4).toString('hex')}`;
const SWEEPABLE = sql`status_rank < 50 AND NOT stuck AND (kind IS DISTINCT FROM 'mms' OR status <> 'sent')`;
let handle: DatabaseHandle;

beforeAll(async () => {
  await asAdmin(`CREATE DATABASE ${name}`);
  const url = withDatabase(adminUrl(), name);
  handle = createDb(url, 6);
  // The schema before 0014, as the previous release left it.
  await migratedBefore(handle.db, '0014');
  await generateEvents(url, EVENTS);
}, 600_000);

afterAll(async () => {
  await handle?.db.destroy();
  await asAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
});

async function sweepIndexes() {
  const { rows } = await sql<{ name: string; valid: boolean }>`
    SELECT c.relname AS name, i.indisvalid AS valid
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = 'messages'::regclass AND c.relname LIKE 'messages_sweep%'
    ORDER BY 1`.execute(handle.db);
  return rows;
}

/** Sweepable messages counted through messages_sweep_due_idx alone, and through the table. */
async function sweepableCounts() {
  return handle.db.transaction().execute(async (trx) => {
    const count = async () =>
      Number(
        (
          await sql<{ n: string }>`
            SELECT count(*) AS n FROM messages WHERE ${SWEEPABLE} AND project_id IS NOT NULL`.execute(
            trx,
          )
        ).rows[0]!.n,
      );
    await sql`SET LOCAL enable_seqscan = off`.execute(trx);
    await sql`SET LOCAL enable_bitmapscan = off`.execute(trx);
    const { rows } = await sql<{ 'QUERY PLAN': string }>`
      EXPLAIN SELECT count(*) FROM messages WHERE ${SWEEPABLE} AND project_id IS NOT NULL`.execute(
      trx,
    );
    const indexed = await count();
    await sql`SET LOCAL enable_seqscan = on`.execute(trx);
    await sql`SET LOCAL enable_indexscan = off`.execute(trx);
    await sql`SET LOCAL enable_indexonlyscan = off`.execute(trx);
    return {
      plan: rows.map((row) => row['QUERY PLAN']).join('\n'),
      indexed,
      table: await count(),
    };
  });
}

test(`When 0014 runs on ${EVENTS} events while callbacks keep arriving, then no write fails or waits for the build, and the new index is valid and whole`, async () => {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM messages`.execute(
    handle.db,
  );
  expect(await sweepIndexes()).toEqual([{ name: 'messages_sweep_idx', valid: true }]);

  // Ingest all along: each call one small batch, as the group commit sends them.
  let ingesting = true;
  const errors: unknown[] = [];
  let during = 0;
  let written = 0;
  let migrating = false;
  let slowest = 0;
  const ingest = (async () => {
    for (let i = 0; ingesting; i++) {
      const started = Date.now();
      try {
        await recordEvents(handle.db, [
          statusEvent('sent', { messageId: `live-${i}`, projectId: 'p-live' }),
        ]);
        written++;
        if (migrating) {
          during++;
          slowest = Math.max(slowest, Date.now() - started);
        }
      } catch (error) {
        errors.push(error);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();

  const started = Date.now();
  migrating = true;
  const applied = await migrateToLatest(handle.db);
  migrating = false;
  const seconds = (Date.now() - started) / 1000;
  ingesting = false;
  await ingest;

  // 0015 (stuck messages by created_at) after it, built concurrently the same way, then 0016
  // (the feed epoch's table), 0017 (messages by API, built concurrently too) and 0018 (the stats
  // trigger function's search_path).
  expect(applied).toEqual([
    '0014_messages_sweep_due_idx',
    '0015_messages_stuck_created_idx',
    '0016_feed_epoch',
    '0017_messages_api_idx',
    '0018_stats_rollups_search_path',
  ]);
  expect(errors).toEqual([]);
  expect(during).toBeGreaterThan(0);
  console.log(
    `0014 to 0017 on ${rows[0]!.n} messages (${EVENTS} events): ${seconds.toFixed(1)} s; ` +
      `${during} writes meanwhile, the slowest ${slowest} ms`,
  );

  // messages_sweep_idx stays for the release before (its claim reads it) until a later one.
  expect(await sweepIndexes()).toEqual([
    { name: 'messages_sweep_due_idx', valid: true },
    { name: 'messages_sweep_idx', valid: true },
  ]);
  const counts = await sweepableCounts();
  expect(counts.plan).toContain('messages_sweep_due_idx');
  expect(counts.indexed).toBe(counts.table);
  // Every live message (one per write, left at sent) is sweepable; every generated one is final
  // or an MMS at sent. (Comparing with the writes that ended while the build ran raced the last
  // write in flight: it ends after the migration and was not counted.)
  expect(counts.table).toBe(written);
}, 600_000);

test('When 0014 was interrupted and left its index invalid, then running it again builds it anew', async () => {
  // What a cancelled CREATE INDEX CONCURRENTLY leaves behind, and no record of the migration.
  await sql`UPDATE pg_index SET indisvalid = false
    WHERE indexrelid = 'messages_sweep_due_idx'::regclass`.execute(handle.db);
  await sql`DELETE FROM kysely_migration WHERE name >= '0014'`.execute(handle.db);
  expect(await sweepIndexes()).toContainEqual({ name: 'messages_sweep_due_idx', valid: false });

  expect(await migrateToLatest(handle.db)).toEqual([
    '0014_messages_sweep_due_idx',
    '0015_messages_stuck_created_idx',
    '0016_feed_epoch',
    '0017_messages_api_idx',
    '0018_stats_rollups_search_path',
  ]);
  expect(await sweepIndexes()).toContainEqual({ name: 'messages_sweep_due_idx', valid: true });
}, 120_000);
