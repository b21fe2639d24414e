import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { createDb, createReaderDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { isDatabaseUnavailable } from '../../src/db/database-unavailable';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { asAdmin, createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * DATABASE_READ_URL set by mistake to another database of the primary's own server (a second
 * deployment's, a stale restored copy, `postgres`): the server is not in recovery and started
 * when DATABASE_URL's did, so the check took it for the primary itself, and lists, stats and the
 * feed answered 200 from a database that never gets this deployment's writes. The reader's
 * database and cluster (pg_control_system()'s system identifier, which a standby shares with
 * its primary) are now compared with DATABASE_URL's, and another one is refused (503). The
 * checks run as whatever role the service connects as: here one without special privileges.
 */
let t: TestApp;
let primary: TestDatabase;
let other: TestDatabase;
let reader: DatabaseHandle;

beforeAll(async () => {
  primary = await createTestDatabase(4);
  other = await createTestDatabase(2); // migrated, like a second deployment's database
  reader = createReaderDb(other.url, 4, primary.db);
  t = await createTestApp(
    {},
    { database: { ...primary, destroy: async () => undefined }, readDb: reader.db },
  );
}, 60_000);

afterAll(async () => {
  await t?.close();
  await reader?.db.destroy();
  await other?.destroy();
  await primary?.destroy();
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When DATABASE_READ_URL names another database of DATABASE_URL’s server, then lists and stats answer 503 + Retry-After, not that database’s rows', async () => {
  const sid = `SM${randomUUID().replace(/-/g, '')}`;
  expect((await postCxml(t.publicApp, cxmlFields({ MessageSid: sid }))).status).toBe(200);
  expect((await get(`/v1/messages/${sid}`)).status).toBe(200); // the primary has it

  const list = await get('/v1/messages?limit=100');
  expect(list.status).toBe(503);
  expect(list.headers['retry-after']).toBeDefined();
  expect(list.body.error.code).toBe('unavailable');
  expect((await get('/v1/stats')).status).toBe(503);
  expect((await get('/v1/events?limit=1')).status).toBe(503);
});

test('When the service connects as a role without special privileges, then the reader’s checks run, and another database is refused naming DATABASE_READ_URL, never its password', async () => {
  const role = `sw_status_reader_${randomBytes(4).toString('hex')}`;
  const password = `pw-${randomBytes(8).toString('hex')}`;
  await asAdmin(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  // What a reporting user is given: SELECT on the tables, nothing else.
  await primary.pool.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`);
  const as = (url: string): string => {
    const parsed = new URL(url);
    parsed.username = role;
    parsed.password = password;
    return parsed.toString();
  };
  const writer = createDb(as(primary.url), 1);
  // The lag check judged at once (no sample is too young), so every function it calls runs.
  const checks = { maxLagMs: 0, checkEveryMs: 0 };
  const same = createReaderDb(as(primary.url), 1, writer.db, checks);
  const another = createReaderDb(as(other.url), 1, writer.db, checks);
  try {
    for (let i = 0; i < 2; i++) {
      expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(same.db)).rows).toEqual([
        { one: 1 },
      ]);
    }
    const refused = await sql`SELECT 1`.execute(another.db).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(Error);
    const { message } = refused as Error;
    expect(message).toMatch(/^DATABASE_READ_URL leads to another database than DATABASE_URL's/);
    expect(message).toContain(new URL(other.url).pathname.slice(1));
    expect(message).not.toContain(password);
    expect(isDatabaseUnavailable(refused)).toBe(true);
  } finally {
    await same.db.destroy();
    await another.db.destroy();
    await writer.db.destroy();
    await primary.pool.query(`DROP OWNED BY ${role}`); // its grants, in this database
    await asAdmin(`DROP ROLE ${role}`);
  }
});

test('When DATABASE_READ_URL’s user may not read a table the reads need (granted table by table before a migration added it), then its reads are refused naming the table, never its password', async () => {
  const role = `sw_status_reader_${randomBytes(4).toString('hex')}`;
  const password = `pw-${randomBytes(8).toString('hex')}`;
  await asAdmin(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  await primary.pool.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`);
  // Migration 0013's table, which every change feed page reads: without it every page was a 500.
  await primary.pool.query(`REVOKE SELECT ON sw_status_feed_removals FROM ${role}`);
  const parsed = new URL(primary.url);
  parsed.username = role;
  parsed.password = password;
  const limited = createReaderDb(parsed.toString(), 1, primary.db, {
    maxLagMs: 0,
    checkEveryMs: 0,
  });
  try {
    const refused = await sql`SELECT 1`.execute(limited.db).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(Error);
    const { message } = refused as Error;
    expect(message).toBe(
      `DATABASE_READ_URL's user ${role} may not read sw_status_feed_removals: SELECT not granted, ` +
        'or the table is not there yet (a standby that has not replayed a migration)',
    );
    expect(message).not.toContain(password);
    expect(isDatabaseUnavailable(refused)).toBe(true);

    // Granted, the same connection's next check serves reads again.
    await primary.pool.query(`GRANT SELECT ON sw_status_feed_removals TO ${role}`);
    expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(limited.db)).rows).toEqual([
      { one: 1 },
    ]);
  } finally {
    await limited.db.destroy();
    await primary.pool.query(`DROP OWNED BY ${role}`); // its grants, in this database
    await asAdmin(`DROP ROLE ${role}`);
  }
});
