import { sql } from 'kysely';
import { asLastStatement } from '../../src/db/kysely-pool';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * The COMMIT sent with a transaction's last statement (src/db/kysely-pool.ts, asLastStatement)
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
    await asLastStatement(() => sql`INSERT INTO pipelined VALUES (2)`.execute(trx));
  });
  expect(await rows()).toEqual([1, 2]);
});

test('When the last statement fails, then nothing of the transaction is committed and its error is the one thrown', async () => {
  await expect(
    database.db.transaction().execute(async (trx) => {
      await sql`INSERT INTO pipelined VALUES (3)`.execute(trx);
      await asLastStatement(() => sql`INSERT INTO pipelined VALUES ('not a number')`.execute(trx));
    }),
  ).rejects.toMatchObject({ code: '22P02' });
  expect(await rows()).toEqual([1, 2]);
});

test('When the COMMIT sent with the last statement fails, then the transaction fails with its error', async () => {
  await expect(
    database.db.transaction().execute(async (trx) => {
      await sql`INSERT INTO pipelined VALUES (4)`.execute(trx);
      // Violates the deferred unique constraint: checked only at COMMIT.
      await asLastStatement(() => sql`INSERT INTO pipelined VALUES (1)`.execute(trx));
    }),
  ).rejects.toMatchObject({ code: '23505' });
  expect(await rows()).toEqual([1, 2]);
  // And the connection serves the next transaction normally.
  await database.db.transaction().execute(async (trx) => {
    await sql`INSERT INTO pipelined VALUES (5)`.execute(trx);
    await asLastStatement(() => sql`INSERT INTO pipelined VALUES (6)`.execute(trx));
  });
  expect(await rows()).toEqual([1, 2, 5, 6]);
});
