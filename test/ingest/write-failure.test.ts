import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { classifyWriteFailure, isUnstorableValue } from '../../src/db/write-failure';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * What the replay does with a failed write depends on classifyWriteFailure: errors made by a
 * real PostgreSQL, not hand-built objects, so a driver change that alters their shape fails
 * here.
 */

let database: TestDatabase;
const clients: Client[] = [];

beforeAll(async () => {
  database = await createTestDatabase(1);
});
afterAll(async () => {
  await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  await database.destroy();
});

async function session(): Promise<Client> {
  const client = new Client({ connectionString: database.url });
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
  return client;
}

async function failure(work: () => Promise<unknown>): Promise<unknown> {
  try {
    await work();
  } catch (error) {
    return error;
  }
  throw new Error('expected the statement to fail');
}

test('When a lock is held by another session past lock_timeout, then the failure is transient (55P03)', async () => {
  const holder = await session();
  const waiter = await session();
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE messages IN ACCESS EXCLUSIVE MODE');
  await waiter.query("SET lock_timeout = '50ms'");
  const error = await failure(() => waiter.query('SELECT count(*) FROM messages'));
  await holder.query('ROLLBACK');
  expect((error as { code: string }).code).toBe('55P03');
  expect(classifyWriteFailure(error)).toBe('transient');
});

test('When a statement outlasts statement_timeout, then the failure is transient (57014)', async () => {
  const client = await session();
  await client.query("SET statement_timeout = '50ms'");
  const error = await failure(() => client.query('SELECT pg_sleep(5)'));
  expect((error as { code: string }).code).toBe('57014');
  expect(classifyWriteFailure(error)).toBe('transient');
});

test('When two transactions deadlock, then the failure is transient (40P01)', async () => {
  const a = await session();
  const b = await session();
  await a.query('CREATE TABLE deadlock_probe (id int PRIMARY KEY)');
  await a.query('INSERT INTO deadlock_probe VALUES (1), (2)');
  await a.query('BEGIN');
  await b.query('BEGIN');
  await a.query('UPDATE deadlock_probe SET id = id WHERE id = 1');
  await b.query('UPDATE deadlock_probe SET id = id WHERE id = 2');
  const results = await Promise.allSettled([
    a.query('UPDATE deadlock_probe SET id = id WHERE id = 2'),
    b.query('UPDATE deadlock_probe SET id = id WHERE id = 1'),
  ]);
  await Promise.all([a.query('ROLLBACK'), b.query('ROLLBACK')]);
  const errors = results.filter((r) => r.status === 'rejected').map((r) => r.reason as unknown);
  expect(errors.map((e) => (e as { code: string }).code)).toEqual(['40P01']);
  expect(classifyWriteFailure(errors[0])).toBe('transient');
});

test('When the schema lacks a table (a migration not applied yet), then the failure is transient, not the event (42P01)', async () => {
  const client = await session();
  const error = await failure(() => client.query('SELECT * FROM no_such_table'));
  expect((error as { code: string }).code).toBe('42P01');
  expect(classifyWriteFailure(error)).toBe('transient');
});

test('When PostgreSQL refuses the data itself, then the failure belongs to the event (classes 22 and 23)', async () => {
  const client = await session();
  const nul = await failure(() => client.query(`SELECT '{"a":"\\u0000"}'::jsonb ->> 'a'`));
  expect((nul as { code: string }).code).toBe('22P05');
  expect(classifyWriteFailure(nul)).toBe('event');

  await client.query('CREATE TABLE check_probe (v text CHECK (v <> $$poison$$))');
  const check = await failure(() => client.query(`INSERT INTO check_probe VALUES ('poison')`));
  expect((check as { code: string }).code).toBe('23514');
  expect(classifyWriteFailure(check)).toBe('event');
});

test('When a value is too large for an index entry, then the failure belongs to the event (54000), and it is an unstorable value', async () => {
  const client = await session();
  await client.query('CREATE TABLE index_probe (v text)');
  await client.query('CREATE INDEX ON index_probe (v)');
  // Random bytes do not compress: an entry over btree's cap of about 2.7 kB.
  const long = randomBytes(4500).toString('base64url');
  const error = await failure(() => client.query('INSERT INTO index_probe VALUES ($1)', [long]));
  expect((error as { code: string }).code).toBe('54000');
  expect(classifyWriteFailure(error)).toBe('event');
  expect(isUnstorableValue(error)).toBe(true);
});

test('When an integrity rule refuses a write, then the failure belongs to the event but not an unstorable value (the caller retries)', async () => {
  const client = await session();
  await client.query('CREATE TABLE unique_probe (v text UNIQUE)');
  await client.query(`INSERT INTO unique_probe VALUES ('a')`);
  const error = await failure(() => client.query(`INSERT INTO unique_probe VALUES ('a')`));
  expect((error as { code: string }).code).toBe('23505');
  expect(isUnstorableValue(error)).toBe(false);
});

test('When the server cannot be reached, then the database is unavailable', async () => {
  const client = new Client({ connectionString: 'postgres://postgres@127.0.0.1:9/none' });
  const error = await failure(() => client.connect());
  expect(classifyWriteFailure(error)).toBe('unavailable');
});

test('When our own code fails on an event (no SQLSTATE), then the failure belongs to the event', () => {
  expect(
    classifyWriteFailure(new TypeError("Cannot read properties of undefined (reading 'x')")),
  ).toBe('event');
});
