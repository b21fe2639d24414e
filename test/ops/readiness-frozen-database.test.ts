import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createDatabaseReadiness } from '../../src/db/database-readiness';
import type { DatabaseReadiness, DatabaseReadinessReport } from '../../src/db/database-readiness';
import { knownMigrations } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { createFreezer } from '../helpers/freezer';
import type { Freezer } from '../helpers/freezer';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * PostgreSQL stops answering on open connections (a partition, a frozen VM, a storage stall).
 * The kubelet probes readiness every few seconds and each check gives up after its timeout, but
 * the check's query cannot be taken back: it holds its connection until TCP gives up on it.
 * Were each probe to send another, a few probes would hold the whole pool — and the callbacks'
 * commits, the moment the database answers again, would queue behind them.
 */

let database: TestDatabase;
let freezer: Freezer;
let handle: DatabaseHandle;
beforeAll(async () => {
  database = await createTestDatabase(1);
  freezer = createFreezer();
  handle = createDb(await freezer.relay(database.url), 4);
});
afterAll(async () => {
  await freezer.close();
  await handle.db.destroy().catch(() => undefined);
  await database.destroy();
});

// A check that is answered opens a connection and sends three queries: on a loaded machine
// that can take hundreds of milliseconds, so the checks' timeout leaves room for it. (What is
// judged below is which connections the checks hold, not how fast they give up.)
const TIMEOUT_MS = 1_000;

/** Checks again, up to `retries` more times, until a check finds the database (or the last). */
async function checkedUntilOk(
  readiness: DatabaseReadiness,
  retries: number,
): Promise<DatabaseReadinessReport> {
  let answered = await readiness.check();
  for (let tries = 0; answered.database !== 'ok' && tries < retries; tries++) {
    answered = await readiness.check();
  }
  return answered;
}

test('When the database stops answering, then every readiness check times out on the one query already waiting, not a new connection each', async () => {
  const readiness = createDatabaseReadiness({
    db: handle.db,
    logger: createLogger('silent'),
    known: await knownMigrations(),
    timeoutMs: TIMEOUT_MS,
  });
  // Answered first. On a loaded machine (a CI run on two cores) the first check, which opens
  // the connection, once took longer than the timeout: it is asked again until answered.
  expect(await checkedUntilOk(readiness, 10)).toMatchObject({ database: 'ok', ready: true });
  freezer.freeze();
  for (let probe = 0; probe < 6; probe++) {
    expect(await readiness.check()).toMatchObject({ database: 'unreachable' });
  }
  // One connection holds the one query still waiting; the rest of the pool is free.
  expect(handle.pool.totalCount - handle.pool.idleCount).toBe(1);
  expect(handle.pool.waitingCount).toBe(0);
});

test('When a failover leaves the query on a connection to the old host unanswered, then a check after shareQueryMs asks again on a new connection and finds the database', async () => {
  const failover = createFreezer();
  const pool = createDb(await failover.relay(database.url), 4);
  try {
    const readiness = createDatabaseReadiness({
      db: pool.db,
      logger: createLogger('silent'),
      known: await knownMigrations(),
      timeoutMs: TIMEOUT_MS,
      // Room for the second check below to start within it on a loaded machine.
      shareQueryMs: 3 * TIMEOUT_MS,
    });
    // The pool's one connection opened first: on a loaded machine, opening it inside the
    // check could take longer than the check's timeout (as in the test above).
    await pool.pool.query('SELECT 1');
    expect(await readiness.check()).toMatchObject({ database: 'ok', ready: true });
    // The pool's idle connection now leads to a host that no longer answers; new ones reach
    // the database.
    failover.freezeOpen();
    const asked = Date.now();
    expect(await readiness.check()).toMatchObject({ database: 'unreachable' });
    // Within shareQueryMs the checks wait on that same query...
    expect(await readiness.check()).toMatchObject({ database: 'unreachable' });
    expect(pool.pool.totalCount).toBe(1);
    // ...past it, one asks again and is answered.
    await new Promise((resolve) => setTimeout(resolve, asked + 3 * TIMEOUT_MS + 100 - Date.now()));
    // Its new connection may take longer than a check's timeout to open on a loaded machine:
    // the checks after it wait on that same query, which the database answers.
    expect(await checkedUntilOk(readiness, 5)).toMatchObject({ database: 'ok', ready: true });
  } finally {
    await failover.close();
    await pool.db.destroy().catch(() => undefined);
  }
});
