import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { Db } from '../../src/db/database';
import { recordEvents } from '../../src/messages/record-events';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { foldDeltas, rebuildRollups } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import {
  STATS_SEED,
  exactCounts,
  getStats,
  scanCounts,
  seededRandom,
} from './support/messages-oracle';
import { expectNarrowRollupsEqualWide } from './support/narrow-rollups';

/**
 * Everything that writes the stats at once, as in production with several replicas: writers
 * recording batches (late, out-of-order, conflicting events), two replicas' compactors folding
 * the deltas, `stats:rebuild` run by an operator, and two retention sweeps removing old
 * messages. None of them fails, and afterwards GET /v1/stats of any window — before and after a
 * last fold — equals a scan of `messages`, and the rollups hold no empty or negative rows.
 * The workload is drawn from STATS_SEED (named in every failure, so it can be replayed).
 */

jest.setTimeout(60_000);
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

const HOUR = 3_600_000;
const BASE = Date.parse('2027-03-14T05:00:00Z');
// sent and delivered twice: the most common statuses weigh more.
const STATUSES = [
  'queued',
  'sending',
  'sent',
  'delivered',
  'undelivered',
  'failed',
  'read',
  'sent',
  'delivered',
];
const ERROR_CODES = [null, null, '30003', '30007', '30008'];
/** Retention removes the messages whose last event is older: the "old" half of the ids. */
const HORIZON = new Date(BASE + 90 * 60_000);

const random = seededRandom(STATS_SEED);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('When writers, two compactors, a rebuild and two retention sweeps run at once, then none fails and the stats of any window equal a scan of the messages', async () => {
  const ids = Array.from({ length: 80 }, () => randomUUID());
  const failures: unknown[] = [];
  const folders = [createDb(t.database.url, 1), createDb(t.database.url, 1)];
  const writing = createDb(t.database.url, 6);
  let stop = false;
  let removed = 0;

  const foldRounds = async (db: Db) => {
    while (!stop) {
      await foldDeltas(db).catch((error: unknown) => failures.push(error));
      await sleep(random() * 15);
    }
  };
  const writer = async (batches: number) => {
    for (let i = 0; i < batches; i++) {
      const events = Array.from({ length: 1 + Math.floor(random() * 6) }, () => {
        const status = pick(STATUSES);
        const messageId = pick(ids);
        // Half the messages live in the first hour only, so that retention removes them.
        const old = ids.indexOf(messageId) % 2 === 0;
        const received = BASE + Math.floor(random() * (old ? HOUR : 3 * HOUR));
        return statusEvent(status, {
          messageId,
          api: random() < 0.3 ? 'native' : 'cxml',
          receivedAt: new Date(received),
          providerTimestamp:
            random() < 0.5 ? new Date(received - Math.floor(random() * 86_400_000)) : null,
          errorCode: status === 'undelivered' || status === 'failed' ? pick(ERROR_CODES) : null,
        });
      });
      await recordEvents(writing.db, events).catch((error: unknown) => failures.push(error));
    }
  };
  const rebuilds = async () => {
    await sleep(300);
    for (let i = 0; i < 4; i++) {
      await rebuildRollups(t.database.db);
      await sleep(100);
    }
  };
  const retentionSweeps = async () => {
    for (let i = 0; i < 20; i++) {
      await removeExpiredMessages(writing.db, HORIZON, 5).then(
        (counts) => (removed += counts.messages),
        (error: unknown) => failures.push(error),
      );
      await sleep(20);
    }
  };

  const folding = folders.map((folder) => foldRounds(folder.db));
  try {
    await Promise.all([
      writer(80),
      writer(80),
      writer(80),
      writer(80),
      rebuilds(),
      retentionSweeps(),
      retentionSweeps(),
    ]);
  } finally {
    stop = true;
    await Promise.all(folding);
    await Promise.all([...folders, writing].map((pool) => pool.db.destroy()));
  }
  expect({ seed: STATS_SEED, failures }).toEqual({ seed: STATS_SEED, failures: [] });
  // Otherwise the sweeps raced nothing.
  expect({ seed: STATS_SEED, removed: removed > 0 }).toEqual({ seed: STATS_SEED, removed: true });

  const windows: Array<[number, number]> = [
    [BASE - HOUR, BASE + 5 * HOUR],
    [BASE + 7_777, BASE + 2 * HOUR + 12_345],
    [BASE + 30 * 60_000 + 1, BASE + 31 * 60_000 - 1],
  ];
  for (let i = 0; i < 6; i++) {
    const since = BASE + Math.floor(random() * 3 * HOUR);
    windows.push([since, since + 1 + Math.floor(random() * 2 * HOUR)]);
  }
  for (const phase of ['unfolded', 'folded']) {
    for (const [a, b] of windows) {
      const since = new Date(a);
      const until = new Date(b);
      for (const query of ['', '&bucket=hour', '&bucket=minute', '&api=native']) {
        const api = query === '&api=native' ? 'native' : undefined;
        const context = { seed: STATS_SEED, phase, since, until, query };
        expect({ ...context, ...exactCounts(await getStats(t, since, until, query)) }).toEqual({
          ...context,
          ...(await scanCounts(t.database.db, since, until, api)),
        });
      }
    }
    await foldDeltas(t.database.db);
    expect(await expectNarrowRollupsEqualWide(t.database.db)).toBeGreaterThan(0);
    const { rows } = await sql<{ n: number }>`
      SELECT (SELECT count(*) FROM stats_minutes
              WHERE messages <= 0 OR conflicts < 0 OR final_within_10s < 0)
           + (SELECT count(*) FROM stats_hours
              WHERE messages <= 0 OR conflicts < 0 OR final_within_10s < 0) AS n`.execute(
      t.database.db,
    );
    expect({ seed: STATS_SEED, phase, emptyOrNegativeRows: Number(rows[0]!.n) }).toEqual({
      seed: STATS_SEED,
      phase,
      emptyOrNegativeRows: 0,
    });
  }
});
