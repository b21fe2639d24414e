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
 * Migrations 0006–0007 (the leaner write path) on a populated store while callbacks keep
 * arriving: the new unique index is built concurrently and the old ones dropped without
 * stopping ingest (every write succeeds while the migration runs; the longest write is
 * measured and printed), and afterwards the stored history is identical — the same messages
 * in the same state, the same events in the same feed order — and dedupe works on the new key.
 *
 * SW_MIGRATION_TEST_EVENTS sets the size (200,000 events by default; run by hand with a few
 * million for docs/scaling.md).
 */

const EVENTS = Number(process.env.SW_MIGRATION_TEST_EVENTS ?? 200_000);
const adminUrl = () => process.env.SW_TEST_ADMIN_URL!;
const name = `sw_status_test_0006_${randomBytes(4).toString('hex')}`;
let handle: DatabaseHandle;
let url: string;

beforeAll(async () => {
  await asAdmin(`CREATE DATABASE ${name}`);
  url = withDatabase(adminUrl(), name);
  handle = createDb(url, 6);
  // The schema before 0006, as the previous release left it.
  await migratedBefore(handle.db, '0006');
  await generateEvents(url, EVENTS);
}, 600_000);

afterAll(async () => {
  await handle?.db.destroy();
  await asAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
});

/** Digests of the stored history that was there before: messages, and events in feed order. */
async function digest() {
  const { rows } = await sql<{ messages: string; events: string; n: number }>`
    SELECT
      (SELECT md5(string_agg(m::text, '|' ORDER BY m.id)) FROM messages m
        WHERE m.id NOT LIKE 'live-%') AS messages,
      (SELECT md5(string_agg((e.tx, e.seq, e.message_id, e.status, e.raw_status,
                              e.message_status, e.dedupe_key, e.received_at)::text, '|'
                             ORDER BY e.tx, e.seq))
        FROM status_events e WHERE e.message_id NOT LIKE 'live-%') AS events,
      (SELECT count(*)::int FROM status_events WHERE message_id NOT LIKE 'live-%') AS n`.execute(
    handle.db,
  );
  return rows[0]!;
}

async function indexNames(table: string) {
  const { rows } = await sql<{ name: string; valid: boolean }>`
    SELECT c.relname AS name, i.indisvalid AS valid
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = ${table}::regclass ORDER BY 1`.execute(handle.db);
  return rows;
}

test(`When 0006 and 0007 run on ${EVENTS} events while callbacks keep arriving, then no write fails or waits for the build, and the stored history is identical`, async () => {
  const before = await digest();
  expect(before.n).toBe(EVENTS);

  // Ingest all along: each call one small batch, as the group commit sends them.
  let ingesting = true;
  const errors: unknown[] = [];
  const acknowledged: string[] = [];
  let during = 0;
  let migrating = false;
  let slowest = 0;
  const ingest = (async () => {
    for (let i = 0; ingesting; i++) {
      const id = `live-${i}`;
      const started = Date.now();
      try {
        await recordEvents(handle.db, [statusEvent('sent', { messageId: id })]);
        acknowledged.push(id);
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

  expect(applied).toEqual(
    expect.arrayContaining(['0006_event_dedupe_per_message', '0007_drop_unused_indexes']),
  );
  expect(errors).toEqual([]);
  expect(during).toBeGreaterThan(0);
  console.log(
    `0006+0007 on ${EVENTS} events: ${seconds.toFixed(1)} s; ${during} writes meanwhile, ` +
      `the slowest ${slowest} ms`,
  );

  // The same history, and every acknowledged write stored once.
  expect(await digest()).toEqual(before);
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM status_events WHERE message_id LIKE 'live-%'`.execute(handle.db);
  expect(rows[0]!.n).toBe(acknowledged.length);

  // The new shape: one valid unique index per event instead of two. messages_api_idx, which
  // 0007 dropped, is built again (concurrently, valid) by 0017: most stores are almost all one
  // API, and a page of the other one read every message without it.
  const events = await indexNames('status_events');
  expect(events).toEqual([
    { name: 'status_events_feed_idx', valid: true },
    { name: 'status_events_message_dedupe_idx', valid: true },
    { name: 'status_events_pkey', valid: true },
  ]);
  expect(await indexNames('messages')).toEqual(
    expect.arrayContaining([
      { name: 'messages_api_created_idx', valid: true },
      { name: 'messages_api_idx', valid: true },
    ]),
  );

  // Dedupe on the new key: a stored generated event sent again is a duplicate.
  const stored = await sql<{
    message_id: string;
    raw_status: string;
    error_code: string | null;
    provider_timestamp: Date | null;
    source: 'callback' | 'proxy';
  }>`
    SELECT message_id, raw_status, error_code, provider_timestamp, source FROM status_events
    WHERE source = 'callback' AND message_id NOT LIKE 'live-%' ORDER BY seq LIMIT 1`.execute(
    handle.db,
  );
  const old = stored.rows[0]!;
  await expect(
    recordEvents(handle.db, [
      statusEvent(old.raw_status, {
        messageId: old.message_id,
        errorCode: old.error_code,
        providerTimestamp: old.provider_timestamp,
      }),
    ]),
  ).resolves.toEqual(['duplicate']);
}, 600_000);
