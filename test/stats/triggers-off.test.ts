import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { Db } from '../../src/db/database';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { startStatsCompactor } from '../../src/stats/stats-compactor';
import { foldDeltas, rebuildRollups, TriggersOffError } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { eventually } from '../helpers/eventually';
import { asAdmin, createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { expectNarrowRollupsEqualWide } from './support/narrow-rollups';

/**
 * session_replication_role = replica left on sw-status's role or database (AWS DMS and
 * pglogical moves tell you to set it on the target for the load): PostgreSQL fires no ordinary
 * triggers, and the narrow rollups GET /v1/stats reads are kept by triggers on the wide ones
 * (db/migrations/0009). A fold then moved deltas into the wide rollups only, and the stats lost
 * those messages for good, answering 200 with a total of 0. Now folds and rebuilds refuse while
 * it is so, the compactor says why, and the deltas wait to be folded once it is reset.
 */

const databaseName = (url: string): string => new URL(url).pathname.slice(1);
const MINUTE = 60_000;

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(() => database?.destroy());

/** Sessions that begin after the setting changed (a session keeps the one it began with). */
async function withNewSessions<T>(use: (db: Db) => Promise<T>): Promise<T> {
  const { db } = createDb(database.url, 2);
  try {
    return await use(db);
  } finally {
    await db.destroy();
  }
}

async function count(db: Db, table: string): Promise<number> {
  const { rows } = await sql<{
    n: number;
  }>`SELECT count(*)::int AS n FROM ${sql.table(table)}`.execute(db);
  return rows[0]!.n;
}

test('When the role fires no triggers, then deltas are not folded (the compactor says why, at error level) and wait; once reset, they are folded into every rollup', async () => {
  const minute = Date.parse('2027-03-01T10:00:00Z');
  await recordEvents(
    database.db,
    [0, 1, 2].map((i) => statusEvent('delivered', { receivedAt: new Date(minute + i * 1000) })),
  );
  await asAdmin(
    `ALTER DATABASE ${databaseName(database.url)} SET session_replication_role = replica`,
  );
  try {
    await withNewSessions(async (db) => {
      await expect(foldDeltas(db)).rejects.toBeInstanceOf(TriggersOffError);
      await expect(rebuildRollups(db)).rejects.toBeInstanceOf(TriggersOffError);

      const errors: string[] = [];
      const logger = createLogger('error', {
        write: (line: string) => void errors.push((JSON.parse(line) as { msg: string }).msg),
      });
      const compactor = startStatsCompactor({ db, logger, intervalMs: 50 });
      try {
        await eventually(() => errors.length > 0, 'the compactor to say why it does not fold');
        expect(errors[0]).toMatch(/not folding deltas: session_replication_role is 'replica'/);
      } finally {
        await compactor.stop();
      }
      expect(await count(db, 'stats_deltas')).toBeGreaterThan(0);
      expect(await count(db, 'stats_minutes')).toBe(0);
    });
  } finally {
    await asAdmin(`ALTER DATABASE ${databaseName(database.url)} RESET session_replication_role`);
  }

  await withNewSessions(async (db) => {
    expect(await foldDeltas(db)).toBeGreaterThan(0);
    expect(await count(db, 'stats_deltas')).toBe(0);
    const { rows } = await sql<{ messages: number }>`
      SELECT sum(messages)::int AS messages FROM stats_minute_counts
      WHERE minute >= ${new Date(minute)} AND minute < ${new Date(minute + MINUTE)}`.execute(db);
    expect(rows[0]!.messages).toBe(3);
    expect(await expectNarrowRollupsEqualWide(db)).toBeGreaterThan(0);
  });
});

test('When the database was unreachable for a round and then comes back firing no triggers, then the compactor still says so at error level', async () => {
  await recordEvents(database.db, [statusEvent('delivered')]);
  await asAdmin(
    `ALTER DATABASE ${databaseName(database.url)} SET session_replication_role = replica`,
  );
  const { db: real } = createDb(database.url, 2);
  try {
    // The first round meets the cutover: the database does not answer.
    let unreachable = true;
    const db = new Proxy(real, {
      get(target, property, receiver) {
        if (property === 'transaction' && unreachable) {
          unreachable = false;
          return () => ({
            execute: () =>
              Promise.reject(
                Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), {
                  code: 'ECONNREFUSED',
                }),
              ),
          });
        }
        const value = Reflect.get(target, property, receiver) as unknown;
        return typeof value === 'function'
          ? (value as (...a: unknown[]) => unknown).bind(target)
          : value;
      },
    }) as Db;
    const lines: { level: number; msg: string }[] = [];
    const logger = createLogger('info', {
      write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }),
    });
    const compactor = startStatsCompactor({ db, logger, intervalMs: 50 });
    try {
      await eventually(
        () => lines.some((line) => /not folding deltas/.test(line.msg)),
        'the compactor to say why it does not fold',
      );
    } finally {
      await compactor.stop();
    }
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM stats_deltas`.execute(
      real,
    );
    expect(rows[0]!.n).toBeGreaterThan(0); // not folded: the triggers-off refusal is what happens
    // The outage said at warn level, then the triggers at error level (50).
    expect(lines.map((line) => [line.level, line.msg])).toEqual([
      [40, 'stats rollups: could not fold deltas'],
      [50, expect.stringMatching(/^stats rollups: not folding deltas: session_replication_role/)],
    ]);
  } finally {
    await real.destroy();
    await asAdmin(`ALTER DATABASE ${databaseName(database.url)} RESET session_replication_role`);
  }
});
