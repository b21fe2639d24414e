import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import type { KyselyPlugin } from 'kysely';
import { Client } from 'pg';
import request from 'supertest';
import { createPublicApp } from '../../src/app';
import { createDb, withDatabase } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createDatabaseReadiness } from '../../src/db/database-readiness';
import { knownMigrations, migrateToLatest } from '../../src/db/migrate';
import { rebaseTransactionIds, transactionIdsAhead } from '../../src/db/transaction-id-rebase';
import type { Lifecycle } from '../../src/http/health.routes';
import { createLogger } from '../../src/logger';
import { directRecorder } from '../../src/messages/event-recorder';
import { recordEvents } from '../../src/messages/record-events';
import { createDisposablePostgres } from '../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../ingest/support/disposable-postgres';
import { statusEvent } from '../factories';
import { checkedAgainstOpenApi } from '../helpers/openapi';
import { TEST_API_TOKEN, createTestApp, testConfig } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import type { TestDatabase } from '../helpers/test-database';

jest.setTimeout(180_000);

/**
 * A database moved logically into a new cluster (README "Restoring or moving the database"):
 * the stored transaction ids (status_events.tx, messages.applied_tx, retention's positions) lie
 * in the new cluster's future until the migration runner rebases them
 * (src/db/transaction-id-rebase.ts). The source is a test database on the run's server, which
 * has issued more transaction ids than the fresh cluster each copy is restored into, a database
 * per test. The cluster's transaction counter is shared by its databases: the test that burns
 * ids past the source's comes last.
 *
 * The copy is what pg_dump | psql makes of these tables — the schema, then every row with its
 * stored values, identity included — done here as JSON through node-postgres: pg_dump refuses a
 * server newer than itself, and the machine's client (Debian's) is older than the embedded
 * server the suite runs on.
 */

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');

let source: TestApp;
let target: DisposablePostgres;
/** The moved tables' rows, as JSON, in the order they are restored. */
let dump: Array<{ table: string; rows: string }>;
const MOVED_TABLES = ['messages', 'status_events', 'sw_status_retention'];
const handles: DatabaseHandle[] = [];
const apps: TestApp[] = [];
const MESSAGES = ['pre-move-1', 'pre-move-2', 'pre-move-3'];

/** Runs a procedure that commits `count` transactions, each taking an id. */
async function burnXids(url: string, count: number): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE OR REPLACE PROCEDURE burn_xids(n int) LANGUAGE plpgsql AS $$
      BEGIN FOR i IN 1..n LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$`);
    await client.query('CALL burn_xids($1)', [count]);
    await client.query('DROP PROCEDURE burn_xids(int)');
  } finally {
    await client.end();
  }
}

async function currentXid(url: string): Promise<bigint> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x');
    return BigInt(rows[0]!.x);
  } finally {
    await client.end();
  }
}

/** The source's rows of the moved tables, as JSON. */
async function dumped(url: string): Promise<typeof dump> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const tables: typeof dump = [];
    for (const table of MOVED_TABLES) {
      const { rows } = await client.query<{ rows: string }>(
        `SELECT coalesce(json_agg(t), '[]')::text AS rows FROM ${table} t`,
      );
      tables.push({ table, rows: rows[0]!.rows });
    }
    return tables;
  } finally {
    await client.end();
  }
}

/** The source, restored into a new database of the fresh cluster; its URL. */
async function restored(name: string): Promise<string> {
  const admin = new Client({ connectionString: target.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(target.url, name);
  // The schema (as the dump's DDL would make it: this release's), then the rows as they were.
  const schema = createDb(url, 1);
  try {
    await migrateToLatest(schema.db);
  } finally {
    await schema.db.destroy();
  }
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN');
    for (const { table, rows } of dump) {
      await client.query(`DELETE FROM ${table}`);
      await client.query(
        `INSERT INTO ${table} OVERRIDING SYSTEM VALUE
         SELECT * FROM json_populate_recordset(NULL::${table}, $1)`,
        [rows],
      );
    }
    await client.query(
      `SELECT setval(pg_get_serial_sequence('status_events', 'seq'), max(seq)) FROM status_events`,
    );
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
  return url;
}

function open(url: string): DatabaseHandle {
  const handle = createDb(url, 2);
  handles.push(handle);
  return handle;
}

/** The public app with readiness as main.ts wires it, and the lines readiness logs. */
async function service(db: DatabaseHandle['db']) {
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = createLogger('info', {
    write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }),
  });
  const readiness = createDatabaseReadiness({ db, logger, known: await knownMigrations() });
  const lifecycle: Lifecycle = { draining: false, database: readiness };
  const app = checkedAgainstOpenApi(
    createPublicApp({ config: testConfig(), logger, db, recorder: directRecorder(db), lifecycle }),
    'public',
  );
  const said = (level: number) =>
    lines.filter((line) => line.level >= level && line.msg !== 'request').map((line) => line.msg);
  return { said, probe: () => request(app).get('/readyz') };
}

async function migrateCli(url: string): Promise<string> {
  const { stdout } = await execFileAsync(
    process.execPath,
    ['--import', 'tsx', 'src/db/migrate-cli.ts'],
    { cwd: ROOT, env: { PATH: process.env.PATH ?? '', DATABASE_URL: url, LOG_LEVEL: 'info' } },
  );
  return stdout;
}

async function storedIds(db: DatabaseHandle['db']) {
  const { rows } = await sql<{ events: string[]; messages: string[]; removed: string }>`
    SELECT ARRAY(SELECT tx::text FROM status_events ORDER BY seq) AS events,
           ARRAY(SELECT applied_tx::text FROM messages ORDER BY id) AS messages,
           (SELECT removed_tx::text FROM sw_status_retention) AS removed`.execute(db);
  return rows[0]!;
}

beforeAll(async () => {
  source = await createTestApp();
  // The source has lived longer than the fresh cluster it is moved to.
  await burnXids(source.database.url, 6_000);
  for (const id of MESSAGES) {
    await recordEvents(source.database.db, [statusEvent('queued', { messageId: id })]);
    await recordEvents(source.database.db, [statusEvent('sent', { messageId: id })]);
  }
  // Retention has removed history: its position is a source transaction id too.
  await sql`UPDATE sw_status_retention SET removed_tx = pg_current_xact_id(), removed_seq = 1`.execute(
    source.database.db,
  );
  target = await createDisposablePostgres();
  dump = await dumped(source.database.url);
});
afterAll(async () => {
  for (const app of apps) await app.close();
  for (const handle of handles) await handle.db.destroy();
  await target?.destroy();
  await source?.close();
});

test('When a database restored into a new cluster is not rebased, then /readyz answers 503 naming the command to run, once in the log, and 200 after the migrations', async () => {
  const { db } = open(await restored('not_rebased'));
  const { probe, said } = await service(db);

  for (let i = 0; i < 3; i++) {
    const res = await probe();
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({
      status: 'unavailable',
      database: 'ok',
      schema: { state: 'too_old', missing: [] },
    });
    expect(res.body.reason).toMatch(
      /^database restored from another cluster: .*run the migrations.*node dist\/db\/migrate-cli\.js/,
    );
  }
  expect(said(50)).toEqual([expect.stringMatching(/^database restored from another cluster/)]);

  expect(await migrateToLatest(db)).toEqual([]);
  const res = await probe();
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ status: 'ready', schema: { state: 'ok' } });
});

test('When the rebase is stopped half-way, then running it again finishes it, a third run does nothing, and on a database never moved it changes nothing', async () => {
  const url = await restored('interrupted');
  const { db } = open(url);
  // Killed after its first batch of messages (batches of one row): the events not begun.
  let messageBatches = 0;
  const killed: KyselyPlugin = {
    transformQuery: (args) => {
      if (JSON.stringify(args.node).includes('UPDATE messages') && ++messageBatches > 1) {
        throw new Error('killed');
      }
      return args.node;
    },
    transformResult: async (args) => args.result,
  };
  await expect(rebaseTransactionIds(db.withPlugin(killed), { batchSize: 1 })).rejects.toThrow(
    'killed',
  );
  expect(await transactionIdsAhead(db)).not.toBeNull();

  const again = await rebaseTransactionIds(db, { batchSize: 1 });
  expect(again).toMatchObject({ events: 6, messages: MESSAGES.length - 1 });
  expect(await storedIds(db)).toEqual({
    events: Array(6).fill('0'),
    messages: Array(MESSAGES.length).fill('0'),
    removed: '0',
  });
  expect(await transactionIdsAhead(db)).toBeNull();
  expect(await rebaseTransactionIds(db)).toBeNull();

  const before = await storedIds(source.database.db);
  expect(await rebaseTransactionIds(source.database.db)).toBeNull();
  expect(await storedIds(source.database.db)).toEqual(before);
  expect(before.events).not.toContain('0');
});

test('When the migrate CLI has run on a restored database, then a callback for a message from before the move is recorded, and a consumer from after=now sees only new events even once the new cluster’s ids pass the old ones', async () => {
  const url = await restored('moved');
  const stdout = await migrateCli(url);

  const app = await createTestApp(
    {},
    { database: { url, destroy: async () => undefined } as unknown as TestDatabase },
  );
  apps.push(app);
  const get = (to: string) =>
    request(app.internalApp).get(to).auth(TEST_API_TOKEN, { type: 'bearer' });

  const outcome = await recordEvents(app.database.db, [
    statusEvent('delivered', { messageId: 'pre-move-1' }),
  ]).then(
    () => 'recorded',
    (error: Error) => error.message,
  );
  expect(outcome).toBe('recorded');
  const message = await get('/v1/messages/pre-move-1');
  expect(message.body.status).toBe('delivered');

  const start = await get('/v1/events?after=now');
  expect(start.status).toBe(200);
  let cursor = start.body.next_cursor as string;
  await recordEvents(app.database.db, [statusEvent('queued', { messageId: 'after-move' })]);
  // The new cluster's ids go past the restored ones (in production: weeks of traffic).
  const needed = Number((await currentXid(source.database.url)) - (await currentXid(url)));
  if (needed > 0) await burnXids(url, needed + 100);
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) {
    const page = await get(`/v1/events?limit=1000&after=${encodeURIComponent(cursor)}`);
    expect(page.status).toBe(200);
    for (const event of page.body.data as Array<{ message_id: string; status: string }>) {
      seen.push(`${event.message_id}:${event.status}`);
    }
    cursor = page.body.next_cursor as string;
  }
  expect(seen).toEqual(['after-move:queued']);
  // What it did, in its log; run again (the next release's Job), it finds nothing to move.
  expect(stdout).toContain(
    `moved the transaction ids of 6 events and ${MESSAGES.length} messages (and 1 in other tables) to 0`,
  );
  expect(await migrateCli(url)).not.toContain('moved the transaction ids');
});
