import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { sql } from 'kysely';
import { latencyBucket } from '../../src/messages/rollup';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import type { Api } from '../../src/messages/statuses';
import { foldDeltas, rebuildRollups } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { expectNarrowRollupsEqualWide } from './support/narrow-rollups';

/**
 * The narrow rollups (db/migrations/0009) are kept by triggers on the wide ones: whatever
 * writes stats_hours / stats_minutes — this release's fold and rebuild, an older release's
 * plain statements — they stay equal to the wide tables' projections.
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(4);
});
afterAll(() => database.destroy());

const HOUR = 3_600_000;
const ERRORS: Record<Api, string[]> = {
  cxml: ['30003', '30007'],
  native: ['carrier_violation', '30005'],
};

/** A message's events, recorded one step per round so that folds move it between keys. */
const messageStory = fc.record({
  api: fc.constantFrom<Api>('cxml', 'native'),
  firstSeenMs: fc.integer({ min: 0, max: 2 * HOUR }),
  steps: fc.array(
    fc.record({
      status: fc.constantFrom('queued', 'sent', 'delivered', 'undelivered', 'failed', 'read'),
      afterMs: fc.integer({ min: 0, max: 30_000 }),
      withError: fc.boolean(),
    }),
    { minLength: 1, maxLength: 4 },
  ),
});
type Story = typeof messageStory extends fc.Arbitrary<infer V> ? V : never;

function eventsOf(story: Story, base: number): StatusEvent[] {
  const messageId = randomUUID();
  let at = base + story.firstSeenMs;
  return story.steps.map((step, index) => {
    at += step.afterMs;
    const failing = step.status === 'undelivered' || step.status === 'failed';
    return statusEvent(step.status, {
      messageId,
      api: story.api,
      receivedAt: new Date(at),
      errorCode: failing && step.withError ? ERRORS[story.api][index % 2]! : null,
    });
  });
}

/** Round r records every message's r-th event, in batches of a few messages at once. */
async function recordRound(events: StatusEvent[]) {
  const batches: StatusEvent[][] = [];
  for (let start = 0; start < events.length; start += 5) {
    batches.push(events.slice(start, start + 5));
  }
  await Promise.all(batches.map((batch) => recordEvents(database.db, batch)));
}

describe('narrow stats rollups', () => {
  test('When a randomised workload is recorded and folded round after round (messages moving between statuses and latency buckets), then after every fold the narrow rollups equal the projections of the wide ones', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(messageStory, { minLength: 10, maxLength: 40 }),
        async (stories) => {
          const base = Date.parse('2027-01-01T00:00:00Z') + run++ * 24 * HOUR + 1234;
          const messages = stories.map((story) => eventsOf(story, base));
          const rounds = Math.max(...messages.map((events) => events.length));
          for (let round = 0; round < rounds; round++) {
            await recordRound(messages.flatMap((events) => events.slice(round, round + 1)));
            await foldDeltas(database.db);
            expect(await expectNarrowRollupsEqualWide(database.db)).toBeGreaterThan(0);
          }
        },
      ),
      { numRuns: 6, endOnFailure: true },
    );
  }, 120_000);

  test('When a message moves from sent to delivered across two folds, then its sent count leaves the narrow counts (it reached zero) and its latency enters the histogram', async () => {
    const at = new Date('2027-02-01T10:20:30Z');
    const minute = new Date('2027-02-01T10:20:00Z');
    const messageId = randomUUID();
    const narrow = async () => ({
      counts: (
        await sql<{ status: string; messages: number }>`
          SELECT status, messages FROM stats_minute_counts WHERE minute = ${minute}
          ORDER BY status`.execute(database.db)
      ).rows,
      latency: (
        await sql<{ latency_bucket: number; messages: number }>`
          SELECT latency_bucket, messages FROM stats_hour_latency
          WHERE hour = date_trunc('hour', ${minute}::timestamptz, 'UTC')`.execute(database.db)
      ).rows,
    });

    await recordEvents(database.db, [statusEvent('sent', { messageId, receivedAt: at })]);
    await foldDeltas(database.db);
    expect(await narrow()).toEqual({ counts: [{ status: 'sent', messages: 1 }], latency: [] });

    const delivered = new Date(at.getTime() + 3_000);
    await recordEvents(database.db, [
      statusEvent('delivered', { messageId, receivedAt: delivered }),
    ]);
    await foldDeltas(database.db);
    expect(await narrow()).toEqual({
      counts: [{ status: 'delivered', messages: 1 }],
      latency: [{ latency_bucket: latencyBucket(3_000), messages: 1 }],
    });
    await expectNarrowRollupsEqualWide(database.db);
  });

  test('When the rollups are rebuilt with deltas still pending, then the narrow rollups equal the projections of the rebuilt wide ones', async () => {
    const base = Date.parse('2027-03-01T00:00:00Z');
    const stories = fc.sample(fc.array(messageStory, { minLength: 30, maxLength: 30 }), {
      numRuns: 1,
      seed: 9,
    })[0]!;
    const messages = stories.map((story) => eventsOf(story, base));
    await recordRound(messages.flatMap((events) => events.slice(0, 1)));
    await foldDeltas(database.db);
    await recordRound(messages.flatMap((events) => events.slice(1)));

    await rebuildRollups(database.db);
    expect(await expectNarrowRollupsEqualWide(database.db)).toBeGreaterThan(0);
    // The rebuild counted every message: no delta is left, and folding changes nothing.
    await foldDeltas(database.db);
    await expectNarrowRollupsEqualWide(database.db);
  });

  test('When an older release writes the wide tables with plain INSERT, UPDATE and DELETE statements, then the narrow rollups follow', async () => {
    const hour = new Date('2027-04-01T05:00:00Z');
    const minute = new Date('2027-04-01T05:07:00Z');
    const run = (statement: ReturnType<typeof sql>) => statement.execute(database.db);
    for (const [table, time, t] of [
      ['stats_hours', 'hour', hour],
      ['stats_minutes', 'minute', minute],
    ] as const) {
      const wide = sql.table(table);
      const column = sql.ref(time);
      // Several latency buckets under one status key, and one not final.
      await run(sql`
        INSERT INTO ${wide} (${column}, api, status, error_code, latency_bucket, messages,
          conflicts, final_within_10s)
        VALUES (${t}, 'cxml', 'delivered', '', 40, 3, 1, 3),
               (${t}, 'cxml', 'delivered', '', 41, 2, 0, 2),
               (${t}, 'cxml', 'sent', '', -1, 4, 0, 0),
               (${t}, 'native', 'failed', 'carrier_violation', 12, 1, 0, 1)`);
      await expectNarrowRollupsEqualWide(database.db);
      // Counts change, the key stays.
      await run(sql`UPDATE ${wide} SET messages = messages + 2, final_within_10s = final_within_10s + 2
                    WHERE ${column} = ${t} AND latency_bucket = 40`);
      await expectNarrowRollupsEqualWide(database.db);
      // The key changes: the counts key nets out, the histogram moves.
      await run(
        sql`UPDATE ${wide} SET latency_bucket = 45 WHERE ${column} = ${t} AND latency_bucket = 41`,
      );
      await expectNarrowRollupsEqualWide(database.db);
      // A status key emptied: its narrow row goes.
      await run(sql`UPDATE ${wide} SET messages = 0 WHERE ${column} = ${t} AND status = 'sent'`);
      await expectNarrowRollupsEqualWide(database.db);
      await run(sql`DELETE FROM ${wide} WHERE ${column} = ${t} AND messages = 0`);
      await run(sql`DELETE FROM ${wide} WHERE ${column} = ${t} AND api = 'native'`);
      await expectNarrowRollupsEqualWide(database.db);
      const left = await sql<{ n: number }>`
        SELECT (SELECT count(*) FROM stats_hour_counts WHERE hour = ${hour})
             + (SELECT count(*) FROM stats_minute_counts WHERE minute = ${minute}) AS n`.execute(
        database.db,
      );
      expect(left.rows[0]!.n).toBeGreaterThan(0);
      await run(sql`DELETE FROM ${wide} WHERE ${column} = ${t}`);
      await expectNarrowRollupsEqualWide(database.db);
    }
  });
});
