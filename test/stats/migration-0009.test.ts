import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { migrateToLatest } from '../../src/db/migrate';
import { recordEvents } from '../../src/messages/record-events';
import { foldDeltas, readRollups } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { migratedBefore } from '../helpers/migrations';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { expectNarrowRollupsEqualWide } from './support/narrow-rollups';

/**
 * Migration 0009 on a store whose wide rollups already hold counts (folded by the previous
 * release), with deltas still waiting to be folded: the narrow rollups start equal to the wide
 * ones' projections, the next fold keeps them so, and a stats read over them counts every
 * message.
 */

let database: TestDatabase;
afterAll(() => database?.destroy());

const HOUR = 3_600_000;
const base = Date.parse('2027-05-01T00:00:00Z');

/** A message first seen `at`, sent, then (for most) final a few seconds later. */
function messageEvents(index: number) {
  const messageId = randomUUID();
  const at = base + ((index * 7_919_000) % (3 * HOUR));
  const api = index % 3 === 0 ? 'native' : 'cxml';
  const sent = statusEvent('sent', { messageId, api, receivedAt: new Date(at) });
  if (index % 5 === 0) return [sent];
  const final = index % 4 === 0 ? 'undelivered' : 'delivered';
  return [
    sent,
    statusEvent(final, {
      messageId,
      api,
      receivedAt: new Date(at + 500 + index * 300),
      errorCode: final === 'undelivered' ? (api === 'cxml' ? '30003' : 'carrier_violation') : null,
    }),
  ];
}

test('When 0009 runs on wide rollups that already hold counts, then the narrow rollups start equal to their projections and the stats count every message', async () => {
  database = await createTestDatabase(4, { migrated: false });
  await migratedBefore(database.db, '0009');

  // The previous release: events recorded and folded (moves included), and a last round not
  // folded yet.
  const messages = Array.from({ length: 120 }, (_, index) => messageEvents(index));
  await recordEvents(
    database.db,
    messages.map((events) => events[0]!),
  );
  await foldDeltas(database.db);
  await recordEvents(
    database.db,
    messages.slice(0, 80).flatMap((events) => events.slice(1)),
  );
  await foldDeltas(database.db);
  await recordEvents(
    database.db,
    messages.slice(80).flatMap((events) => events.slice(1)),
  );

  // 0009 first (later migrations may follow it).
  expect((await migrateToLatest(database.db))[0]).toBe('0009_stats_narrow_rollups');
  expect(await expectNarrowRollupsEqualWide(database.db)).toBeGreaterThan(0);

  // Whole hours only (no edge part-minutes): the hour rollups plus the deltas not folded yet.
  const hours = [base, base + 3 * HOUR] as const;
  const plan = { hours, minutes: [], deltas: hours, edges: [] };
  const expected = (
    await sql<{ messages: number; final: number }>`
      SELECT count(*)::int AS messages, count(first_terminal_at)::int AS final
      FROM messages`.execute(database.db)
  ).rows[0]!;
  const sums = async () => {
    const { counts, latency } = await readRollups(database.db, plan, {});
    const total = (rows: Array<{ messages: number }>) => rows.reduce((n, r) => n + r.messages, 0);
    return { messages: total(counts), final: total(latency) };
  };
  expect(await sums()).toEqual(expected);
  await foldDeltas(database.db);
  await expectNarrowRollupsEqualWide(database.db);
  expect(await sums()).toEqual(expected);
});
