import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import request from 'supertest';
import { createDb } from '../../src/db/database';
import { feedCursors } from '../../src/feed/feed-cursor';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { createRetention } from '../../src/retention/retention';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { statusEvent } from '../factories';
import { eventually } from '../helpers/eventually';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Retention (RETENTION_DAYS, src/retention) on a populated database: messages whose last
 * activity is older than the horizon go with their events and relay jobs, in bounded steps;
 * recent ones, their history and their dedupe stay; ingest keeps writing meanwhile — also while
 * a step holds its rows locked — and the feed refuses a cursor that would skip removed events.
 */

const OLD = 3_000;
const RECENT = 300;
const DAY = 86_400_000;
let t: TestApp;

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

beforeAll(async () => {
  t = await createTestApp();
  // The previous years: OLD messages last active 40 days ago, 3 events and a delivered relay job
  // each. Written as the write path would leave them (one transaction: one feed stretch).
  await populate('old', OLD, new Date(Date.now() - 40 * DAY));
  await populate('recent', RECENT, new Date(Date.now() - 2 * DAY));
});

afterAll(async () => {
  await t?.close();
});

async function populate(prefix: string, count: number, at: Date) {
  await sql`
    INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at,
      created_at, updated_at, last_event_at, "to", "from", client_status_callback)
    SELECT ${prefix} || '-' || i, 'cxml', 'delivered', 'delivered', 50, ${at}, ${at}, ${at}, ${at},
      '+15550000000', '+15551111111', 'https://app.example.com/cb'
    FROM generate_series(1, ${count}) i`.execute(t.database.db);
  await sql`
    INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
      dedupe_key, raw, message_status)
    SELECT ${prefix} || '-' || i, 'cxml', s, s, 'callback', ${at},
      sha256(convert_to(${prefix} || i || s, 'UTF8')), '{}', s
    FROM generate_series(1, ${count}) i, unnest(ARRAY['queued', 'sent', 'delivered']) s`.execute(
    t.database.db,
  );
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, state, delivered_at)
    SELECT ${prefix} || '-' || i, 'https://app.example.com/cb', 'https://app.example.com', 'POST',
      'delivered', ${at}
    FROM generate_series(1, ${count}) i`.execute(t.database.db);
}

async function counts(prefix: string) {
  const { rows } = await sql<{ messages: number; events: number; jobs: number }>`
    SELECT (SELECT count(*)::int FROM messages WHERE id LIKE ${prefix + '-%'}) AS messages,
           (SELECT count(*)::int FROM status_events WHERE message_id LIKE ${prefix + '-%'}) AS events,
           (SELECT count(*)::int FROM relay_jobs WHERE message_id LIKE ${prefix + '-%'}) AS jobs`.execute(
    t.database.db,
  );
  return rows[0]!;
}

test('When RETENTION_DAYS is 30, then messages last active 40 days ago go with their events and relay jobs in bounded steps, while recent ones, their dedupe and ongoing ingest are untouched', async () => {
  const registry = new Registry();
  const lines: Array<{ msg: string; removed?: unknown }> = [];
  const logger = createLogger('info', {
    write: (line: string) => void lines.push(JSON.parse(line)),
  });
  const retention = createRetention({
    db: t.database.db,
    logger,
    registry,
    options: { retentionDays: 30, batch: 250, pauseMs: 0 },
  })!;
  // A feed consumer that has read into the old history, and one at its end.
  const cursors = feedCursors([TEST_TOKEN_SECRET]);
  const { rows: positions } = await sql<{ tx: string; seq: number }>`
    SELECT tx::text AS tx, seq FROM status_events ORDER BY tx, seq`.execute(t.database.db);
  const midOld = cursors.encode(positions[10]!);
  const atEnd = cursors.encode(positions.at(-1)!);

  // Ingest runs all along: new messages and new events for the recent ones.
  let ingesting = true;
  const ingestErrors: unknown[] = [];
  let ingested = 0;
  let slowest = 0;
  const ingest = (async () => {
    for (let i = 0; ingesting; i++) {
      const started = Date.now();
      try {
        await recordEvents(t.database.db, [
          statusEvent('sent', { messageId: `live-${i}` }),
          statusEvent('delivered', {
            messageId: `recent-${(i % RECENT) + 1}`,
            providerTimestamp: new Date(Date.now() + i),
          }),
        ]);
        ingested++;
      } catch (error) {
        ingestErrors.push(error);
      }
      slowest = Math.max(slowest, Date.now() - started);
      // A failing call must not turn this loop into one the event loop never leaves.
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();

  const removed = await retention.runOnce();
  ingesting = false;
  await ingest;

  expect(ingestErrors).toEqual([]);
  expect(ingested).toBeGreaterThan(0);
  expect(removed).toEqual({ messages: OLD, status_events: 3 * OLD, relay_jobs: OLD });
  expect(await counts('old')).toEqual({ messages: 0, events: 0, jobs: 0 });
  const recent = await counts('recent');
  expect(recent.messages).toBe(RECENT);
  expect(recent.jobs).toBe(RECENT);
  expect(recent.events).toBeGreaterThanOrEqual(3 * RECENT);
  // The dedupe of what was retained still holds: a stored event sent again is a duplicate.
  await expect(
    recordEvents(t.database.db, [statusEvent('sent', { messageId: 'live-0' })]),
  ).resolves.toEqual(['duplicate']);

  // Said in the metric and the log.
  const metric = await registry.getSingleMetricAsString('sw_status_retention_removed_total');
  expect(metric).toContain(`sw_status_retention_removed_total{table="messages"} ${OLD}`);
  expect(metric).toContain(`sw_status_retention_removed_total{table="status_events"} ${3 * OLD}`);
  expect(lines).toContainEqual(
    expect.objectContaining({
      msg: 'retention: removed expired history',
      removed: { messages: OLD, status_events: 3 * OLD, relay_jobs: OLD },
    }),
  );
  // Measured, not asserted: the longest single ingest call while retention ran.
  console.log(`retention: ${ingested} ingest batches during the round, slowest ${slowest} ms`);

  // The feed: a cursor inside the removed history is refused, one past it still works, and a
  // consumer starting over gets exactly the retained events.
  const expired = await get(`/v1/events?after=${midOld}`);
  expect(expired.status).toBe(410);
  expect(expired.body.error.code).toBe('cursor_expired');
  expect((await get(`/v1/events?after=${atEnd}`)).status).toBe(200);
  // The feed's horizon is the whole cluster's: another test file's open transaction can hold
  // the retained events back for a moment (CI once read an empty first page), so the consumer
  // asks again until they show, as a dashboard would.
  let seen: string[] = [];
  await eventually(async () => {
    const fromStart = await get('/v1/events?limit=1000&wait=1');
    expect(fromStart.status).toBe(200);
    seen = (fromStart.body.data as Array<{ message_id: string }>).map((e) => e.message_id);
    return seen.filter((id) => id.startsWith('recent-')).length >= 3 * RECENT;
  }, 'the retained events in the feed');
  expect(seen.some((id) => id.startsWith('old-'))).toBe(false);
});

test('While a retention step holds its rows locked, ingest goes on without waiting, and a step of another replica returns at once without removing anything', async () => {
  await populate('held', 50, new Date(Date.now() - 40 * DAY));
  await populate('other', 50, new Date(Date.now() - 40 * DAY));
  const holder = createDb(t.database.url, 1);
  try {
    await holder.db.transaction().execute(async (trx) => {
      // A step of 50 that has not committed yet.
      const step = await removeExpiredMessages(trx, new Date(Date.now() - 30 * DAY), 50);
      expect(step.messages).toBe(50);
      // Meanwhile: ingest of new and recent messages commits, and a second step (another
      // replica) does not wait: not its turn.
      await expect(
        recordEvents(t.database.db, [
          statusEvent('sent', { messageId: randomUUID() }),
          statusEvent('failed', { messageId: 'recent-1' }),
        ]),
      ).resolves.toEqual(['recorded', 'recorded']);
      const other = await removeExpiredMessages(
        t.database.db,
        new Date(Date.now() - 30 * DAY),
        1000,
      );
      expect(other.messages).toBe(0);
    });
  } finally {
    await holder.db.destroy();
  }
  // Its turn now: the rest goes.
  const after = await removeExpiredMessages(t.database.db, new Date(Date.now() - 30 * DAY), 1000);
  expect(after.messages).toBe(50);
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM messages WHERE id LIKE 'held-%' OR id LIKE 'other-%'`.execute(
    t.database.db,
  );
  expect(rows[0]!.n).toBe(0);
});

test('When neither RETENTION_DAYS nor RELAY_KEEP_DELIVERED_DAYS is set, then nothing runs; RELAY_KEEP_DELIVERED_DAYS alone removes only delivered jobs past it', async () => {
  const registry = new Registry();
  const logger = createLogger('silent');
  expect(createRetention({ db: t.database.db, logger, registry, options: {} })).toBeUndefined();
  await populate('jobs', 20, new Date(Date.now() - 10 * DAY));
  const retention = createRetention({
    db: t.database.db,
    logger,
    registry,
    options: { relayKeepDeliveredDays: 7, batch: 8, pauseMs: 0 },
  })!;
  const removed = await retention.runOnce();
  expect(removed.messages).toBe(0);
  expect(removed.relay_jobs).toBeGreaterThanOrEqual(20);
  expect(await counts('jobs')).toEqual({ messages: 20, events: 60, jobs: 0 });
  expect((await counts('recent')).jobs).toBe(RECENT);
});
