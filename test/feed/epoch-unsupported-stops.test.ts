import { startFeedEpochChecks } from '../../src/feed/feed-epoch';
import type { Db } from '../../src/db/database';
import { createLogger } from '../../src/logger';
import { eventually } from '../helpers/eventually';

/**
 * A managed PostgreSQL that does not implement a function raises feature_not_supported
 * (SQLSTATE 0A000): Aurora PostgreSQL answers e.g. "Function pg_stat_get_wal_receiver() is
 * currently not supported in Aurora" with 0A000 (PG::FeatureNotSupported). The epoch check
 * treats only 42P01 and 42501 as "refused for good"; a 0A000 refusal is retried every 10 s on
 * every pod for ever (a failing statement, an ERROR in the server's log, every 10 s per pod),
 * and the pod's log says "could not check" (a transient failure) instead of "checking stops".
 */

function refusingDb(code: string): { db: Db; calls: () => number } {
  let calls = 0;
  const db = {
    transaction: () => ({
      setIsolationLevel: () => ({
        execute: async () => {
          calls += 1;
          throw Object.assign(
            new Error('Function pg_walfile_name() is currently not supported in Aurora'),
            { code },
          );
        },
      }),
    }),
  } as unknown as Db;
  return { db, calls: () => calls };
}

test('When the database refuses the epoch check as not supported (0A000), then checking stops as for a permission refusal, and says so once', async () => {
  const logger = createLogger('silent');
  const warn = jest.spyOn(logger, 'warn');
  const { db, calls } = refusingDb('0A000');
  const checker = startFeedEpochChecks({ db, logger, intervalMs: 10 });
  await eventually(() => calls() >= 1, 'the first check');
  // Time for a few more rounds of 10 ms, were they made.
  await new Promise((resolve) => setTimeout(resolve, 300));
  await checker.stop();
  // Refused for good: one attempt, not one every interval.
  expect(calls()).toBe(1);
  expect(warn.mock.calls.map((call) => String(call[1]))).toEqual([
    expect.stringContaining('checking stops'),
  ]);
});

test.each(['42501', '42P01'])(
  'When the database refuses it with %s (denied, or the table missing: an operator can end that), then it is said once and checked again only after minutes, not every round',
  async (code) => {
    const logger = createLogger('silent');
    const warn = jest.spyOn(logger, 'warn');
    const { db, calls } = refusingDb(code);
    const checker = startFeedEpochChecks({ db, logger, intervalMs: 10 });
    await eventually(() => calls() >= 1, 'the first check');
    // Time for a few more rounds of 10 ms, were they made.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await checker.stop();
    expect(calls()).toBe(1);
    expect(warn.mock.calls.map((call) => String(call[1]))).toEqual([
      expect.stringContaining('checked again every 5 minutes'),
    ]);

    // Checked again after that pace (here 100 ms), not stopped: said once all the same.
    const again = refusingDb(code);
    const started = Date.now();
    const quick = startFeedEpochChecks({
      db: again.db,
      logger,
      intervalMs: 10,
      refusedRetryMs: 100,
    });
    await eventually(() => again.calls() >= 2, 'a second check');
    await quick.stop();
    // Not every 10 ms round: at the refusals' pace.
    expect(again.calls()).toBeLessThanOrEqual(2 + Math.floor((Date.now() - started) / 100));
    expect(warn).toHaveBeenCalledTimes(2);
  },
);
