import { sql } from 'kysely';
import { lastInTransaction, preparedStatement } from '../../src/db/kysely-pool';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * The COMMIT sent with a transaction's last statement (src/db/kysely-pool.ts, lastInTransaction)
 * keeps a transaction's meaning on a real PostgreSQL: it commits when the statement succeeds;
 * when the statement fails, nothing is committed and its error is what the caller sees; when
 * the COMMIT itself fails (a deferred constraint), the transaction fails with that error. The
 * connection is fine for the next transaction either way.
 */

let database: TestDatabase;

beforeAll(async () => {
  // One connection: every transaction below reuses the one the previous left behind.
  database = await createTestDatabase(1);
  await sql`CREATE TABLE pipelined (id int, CONSTRAINT pipelined_id UNIQUE (id)
    DEFERRABLE INITIALLY DEFERRED)`.execute(database.db);
});
afterAll(async () => {
  await database?.destroy();
});

const rows = async () =>
  (await sql<{ id: number }>`SELECT id FROM pipelined ORDER BY id`.execute(database.db)).rows.map(
    (row) => row.id,
  );

test('When the last statement succeeds, then the transaction is committed', async () => {
  await database.db.transaction().execute(async (trx) => {
    await sql`INSERT INTO pipelined VALUES (1)`.execute(trx);
    await trx.executeQuery(lastInTransaction(sql`INSERT INTO pipelined VALUES (2)`.compile(trx)));
  });
  expect(await rows()).toEqual([1, 2]);
});

test('When the last statement fails, then nothing of the transaction is committed and its error is the one thrown', async () => {
  await expect(
    database.db.transaction().execute(async (trx) => {
      await sql`INSERT INTO pipelined VALUES (3)`.execute(trx);
      await trx.executeQuery(
        lastInTransaction(sql`INSERT INTO pipelined VALUES ('not a number')`.compile(trx)),
      );
    }),
  ).rejects.toMatchObject({ code: '22P02' });
  expect(await rows()).toEqual([1, 2]);
});

test('When the COMMIT sent with the last statement fails, then the transaction fails with its error', async () => {
  await expect(
    database.db.transaction().execute(async (trx) => {
      await sql`INSERT INTO pipelined VALUES (4)`.execute(trx);
      // Violates the deferred unique constraint: checked only at COMMIT.
      await trx.executeQuery(lastInTransaction(sql`INSERT INTO pipelined VALUES (1)`.compile(trx)));
    }),
  ).rejects.toMatchObject({ code: '23505' });
  expect(await rows()).toEqual([1, 2]);
  // And the connection serves the next transaction normally.
  await database.db.transaction().execute(async (trx) => {
    await sql`INSERT INTO pipelined VALUES (5)`.execute(trx);
    await trx.executeQuery(lastInTransaction(sql`INSERT INTO pipelined VALUES (6)`.compile(trx)));
  });
  expect(await rows()).toEqual([1, 2, 5, 6]);
});

test('When a statement is marked last, then the COMMIT leaves with it: what follows in the callback runs outside the transaction', async () => {
  await database.db.transaction().execute(async (trx) => {
    await sql`INSERT INTO pipelined VALUES (7)`.execute(trx);
    const inside = await sql<{
      tx: string | null;
    }>`SELECT txid_current_if_assigned()::text AS tx`.execute(trx);
    expect(inside.rows[0]!.tx).not.toBeNull();
    await trx.executeQuery(lastInTransaction(sql`INSERT INTO pipelined VALUES (8)`.compile(trx)));
    // The INSERTs' transaction has committed: this SELECT is a transaction of its own.
    const after = await sql<{
      tx: string | null;
    }>`SELECT txid_current_if_assigned()::text AS tx`.execute(trx);
    expect(after.rows[0]!.tx).toBeNull();
  });
  expect(await rows()).toEqual([1, 2, 5, 6, 7, 8]);
});

test('When a prepared statement is marked last, then it is sent without the mark, under its own name', async () => {
  const insert = preparedStatement('pipelined_insert', 'INSERT INTO pipelined VALUES ($1)');
  await database.db.transaction().execute(async (trx) => {
    await sql`INSERT INTO pipelined VALUES (9)`.execute(trx);
    await trx.executeQuery(lastInTransaction(insert([10])));
  });
  const prepared = await sql<{ name: string; statement: string }>`
    SELECT name, statement FROM pg_prepared_statements`.execute(database.db);
  expect(prepared.rows).toEqual([
    { name: 'pipelined_insert', statement: 'INSERT INTO pipelined VALUES ($1)' },
  ]);
  expect(await rows()).toEqual([1, 2, 5, 6, 7, 8, 9, 10]);
});
