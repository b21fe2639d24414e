import { Client } from 'pg';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createDb } from '../../src/db/database';
import type { Db } from '../../src/db/database';
import { createLogger } from '../../src/logger';
import { createRelay } from '../../src/relay/relay';
import type { RelayWorker } from '../../src/relay/relay-worker';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { startTestSweep } from '../reconcile/support';
import { testConfig } from '../helpers/test-app';
import { asAdmin, createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';

/**
 * The relay and the reconciliation sweep retry their database work until it succeeds, and say
 * why it fails. They used to say "cannot reach the database" whatever the error: an operator
 * reading it looks for a network fault while the server is up and refusing (read-only after a
 * failover), or a session holds a lock. Each case here has a real PostgreSQL produce the error.
 */

jest.setTimeout(30_000);

interface Line {
  msg: string;
  code?: string;
  kind?: string;
}

let database: TestDatabase;
let name: string;
let relay: RelayWorker | undefined;
let sweep: ReconcileWorker | undefined;
let holder: Client | undefined;

beforeEach(async () => {
  database = await createTestDatabase(4);
  name = new URL(database.url).pathname.slice(1);
});
afterEach(async () => {
  await relay?.stop();
  await sweep?.stop();
  relay = sweep = undefined;
  await holder?.end();
  holder = undefined;
  await database.destroy();
});

/** Both loops on the test's database, logging into `lines`. */
function startLoops(db: Db = database.db): Line[] {
  const lines: Line[] = [];
  const logger = createLogger('info', {
    write: (line: string) => void lines.push(JSON.parse(line) as Line),
  });
  relay = createRelay({ config: testConfig(), db, logger, tuning: { pollMs: 20 } });
  relay.start();
  sweep = startTestSweep({
    db,
    logger,
    lookup: { lookup: () => Promise.reject(new Error('no lookup expected')) },
    projects: ['p-failure-log'],
  });
  return lines;
}

/** An operator's session holding every table the loops touch until `holder.end()`. */
async function holdTables(): Promise<void> {
  holder = new Client({ connectionString: database.url });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE relay_jobs, messages IN ACCESS EXCLUSIVE MODE');
}

const failureLines = (lines: Line[], subject: string) =>
  lines.filter((line) => line.msg.startsWith(subject) && line.msg.endsWith('retrying'));

test.each([
  {
    case: 'the server is read-only (a standby after a failover)',
    set: 'default_transaction_read_only = on',
    lock: false,
    code: '25006',
    says: /the database is read-only .*\[SQLSTATE 25006\]; retrying$/,
  },
  {
    case: 'a lock wait times out (a short lock_timeout on the database)',
    set: "lock_timeout = '200ms'",
    lock: true,
    code: '55P03',
    says: /a lock wait timed out .*\[SQLSTATE 55P03\]; retrying$/,
  },
  {
    case: 'a statement is cancelled (a short statement_timeout on the database)',
    set: "statement_timeout = '200ms'",
    lock: true,
    code: '57014',
    says: /a statement was cancelled .*\[SQLSTATE 57014\]; retrying$/,
  },
])(
  'When $case, then the relay and the sweep log what happened with its SQLSTATE, not that the database cannot be reached',
  async ({ set, lock, code, says }) => {
    // Sessions opened from now on take the setting, as on a standby or a tuned role.
    await asAdmin(`ALTER DATABASE ${name} SET ${set}`);
    if (lock) await holdTables();
    const lines = startLoops();

    await eventually(
      () =>
        failureLines(lines, 'relay worker').length > 0 &&
        failureLines(lines, 'reconciliation').length > 0,
    );
    for (const subject of ['relay worker', 'reconciliation']) {
      const [line, ...more] = failureLines(lines, subject);
      expect(line!.msg).toMatch(says);
      expect(line!.msg).not.toMatch(/cannot reach/);
      expect(line!.code).toBe(code);
      // One line while the reason stays the same, not one per retry.
      expect(more).toEqual([]);
    }
  },
);

test('When the database refuses the service’s sessions, then the relay says so, and says when it works again', async () => {
  // A database closed to connections (maintenance): the server is up and answers 55000.
  await asAdmin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS false`);
  const lines = startLoops();
  await eventually(() => failureLines(lines, 'relay worker').length > 0);
  expect(failureLines(lines, 'relay worker')[0]!.msg).toMatch(/refused the session/);

  await asAdmin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`);
  await eventually(() =>
    lines.some((line) => line.msg === 'relay worker (outbox): the database works again'),
  );
});

test('When nothing listens at the database’s address, then the loops say they cannot reach it', async () => {
  // A port just freed: connections to it are refused.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  const nowhere = createDb(`postgres://postgres@127.0.0.1:${port}/postgres`, 2);
  try {
    const lines = startLoops(nowhere.db);
    await eventually(
      () =>
        failureLines(lines, 'relay worker').length > 0 &&
        failureLines(lines, 'reconciliation').length > 0,
    );
    for (const subject of ['relay worker', 'reconciliation']) {
      const [line] = failureLines(lines, subject);
      expect(line!.msg).toMatch(/cannot reach the database .*\[ECONNREFUSED\]; retrying$/);
      expect(line!.kind).toBe('unreachable');
    }
  } finally {
    await relay?.stop();
    await sweep?.stop();
    relay = sweep = undefined;
    await nowhere.db.destroy();
  }
});
