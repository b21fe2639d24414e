import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { Db } from '../../src/db/database';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { startStatsCompactor } from '../../src/stats/stats-compactor';
import { foldDeltas } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { eventually } from '../helpers/eventually';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { exactCounts, getStats, scanCounts } from './support/messages-oracle';

/**
 * A replica dies (or its connection is cut) while its compactor is folding the stats deltas:
 * the fold is one transaction, so nothing of it lands and no delta is lost, the stats still
 * count every message, and the next compactor round folds it all — here late callbacks, days
 * later, for hours long folded (conflicts, reads, a late sent), which move counts between keys.
 */

jest.setTimeout(30_000);
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

async function pendingDeltas(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM stats_deltas`.execute(
    db,
  );
  return rows[0]!.n;
}

/** How a client sees its backend terminated: the FATAL 57P01, or the socket closing first. */
function connectionLost(error: unknown): boolean {
  const { code, message } = error as { code?: string; message?: string };
  return code === '57P01' || code === 'ECONNRESET' || /Connection terminated/i.test(message ?? '');
}

async function expectStatsEqualScan(since: Date, until: Date, query = '') {
  const context = { since, until, query };
  expect({ ...context, ...exactCounts(await getStats(t, since, until, query)) }).toEqual({
    ...context,
    ...(await scanCounts(t.database.db, since, until)),
  });
}

test('When a fold is killed mid-way, then no delta is lost and the stats still equal a scan, and the next compactor round folds the late callbacks for old hours', async () => {
  const old = Date.parse('2027-01-10T10:00:00Z');
  const ids = Array.from({ length: 10 }, () => randomUUID());
  await recordEvents(
    t.database.db,
    ids.map((messageId, i) =>
      statusEvent('sent', { messageId, receivedAt: new Date(old + i * 61_000) }),
    ),
  );
  await foldDeltas(t.database.db);
  // Late callbacks, three days later, with old provider timestamps: conflicts, read, a late sent.
  await recordEvents(
    t.database.db,
    ids.flatMap((messageId, i) => [
      statusEvent('delivered', {
        messageId,
        receivedAt: new Date(old + 3 * DAY),
        providerTimestamp: new Date(old + i * 61_000 + 5_000),
      }),
      statusEvent(i % 2 ? 'undelivered' : 'read', {
        messageId,
        receivedAt: new Date(old + 3 * DAY + 1_000),
        providerTimestamp: new Date(old + i * 61_000 + 6_000),
        errorCode: i % 2 ? '30003' : null,
      }),
      statusEvent('sent', { messageId, receivedAt: new Date(old + 3 * DAY + 2_000) }),
    ]),
  );
  const pending = await pendingDeltas(t.database.db);
  expect(pending).toBeGreaterThan(0);

  // A test-only trigger holds the fold's statement for 2 s, after it has taken the lock, deleted
  // the deltas and written the rollups and before it commits: the moment to kill it.
  await sql`CREATE FUNCTION test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$`.execute(t.database.db);
  await sql`CREATE TRIGGER test_slow AFTER INSERT OR UPDATE ON stats_hours
            FOR EACH STATEMENT EXECUTE FUNCTION test_slow()`.execute(t.database.db);
  const folder = createDb(t.database.url, 1);
  const fold = foldDeltas(folder.db).then(
    () => 'folded',
    (error: unknown) => (connectionLost(error) ? 'connection lost' : String(error)),
  );
  const foldBackends = sql<{ pid: number }>`
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND query LIKE '%pg_try_advisory_xact_lock%' AND wait_event = 'PgSleep'`;
  await eventually(
    async () => (await foldBackends.execute(t.database.db)).rows.length > 0,
    'the fold sleeping in its trigger',
    5_000,
  );
  const { rows: killed } = await sql<{ terminated: boolean }>`
    SELECT pg_terminate_backend(pid) AS terminated FROM (${foldBackends}) f`.execute(t.database.db);
  expect(killed).toEqual([{ terminated: true }]);
  expect(await fold).toBe('connection lost');
  await folder.db.destroy().catch(() => undefined);
  await sql`DROP TRIGGER test_slow ON stats_hours`.execute(t.database.db);

  expect(await pendingDeltas(t.database.db)).toBe(pending);
  const since = new Date(old - HOUR);
  const until = new Date(old + 5 * HOUR);
  await expectStatsEqualScan(since, until);

  const compactor = startStatsCompactor({
    db: t.database.db,
    logger: createLogger('silent'),
    intervalMs: 50,
  });
  try {
    await eventually(
      async () => (await pendingDeltas(t.database.db)) === 0,
      'the compactor folding every delta',
      10_000,
    );
  } finally {
    await compactor.stop();
  }
  for (const query of ['', '&bucket=hour', '&bucket=minute']) {
    // Off the minute edges: minutes 0 and 7 are read from the messages, 1 to 6 from the rollups.
    await expectStatsEqualScan(new Date(old + 17_000), new Date(old + 7 * 60_000 + 3_000), query);
    await expectStatsEqualScan(since, until, query);
  }
});
