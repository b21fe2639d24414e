import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import { migrateReachable } from '../../src/db/migrate';
import { schemasOpenToAll } from '../../src/db/schema-privileges';
import { createLogger } from '../../src/logger';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { foldDeltas } from '../../src/stats/stats.repository';
import { nativeFields, postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { asAdmin, createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A shared cluster where every role may create objects in `public` (PostgreSQL ≤ 14, or a
 * cluster upgraded from one), which is on sw-status's search_path. pg_catalog is searched
 * first, but a function whose argument types match a call exactly beats PostgreSQL's
 * polymorphic one (CVE-2018-1058): another role's `unnest(timestamptz[])`, or `format(text, …)`
 * in the stats rollups' trigger function, ran as sw-status's role every 5 s, from the stats
 * compactor's fold. Now the hottest such calls name pg_catalog, the trigger function has a
 * search_path of its own (db/migrations/0018), and migrating (and a production start) says
 * which schema is open to all and how to close it.
 */
const databaseName = (url: string): string => new URL(url).pathname.slice(1);
const mallory = `sw_test_mallory_${randomBytes(4).toString('hex')}`;
const DAY = 86_400_000;

let database: TestDatabase;
let t: TestApp;
beforeAll(async () => {
  database = await createTestDatabase(2);
  await asAdmin(`CREATE ROLE ${mallory} NOLOGIN`);
  await asAdmin(`GRANT CONNECT ON DATABASE ${databaseName(database.url)} TO ${mallory}`);
  await sql.raw(`GRANT CREATE ON SCHEMA public TO PUBLIC`).execute(database.db);
  // Mallory, as herself: a table open to all, and "better-matching" functions that note who
  // called them with what.
  const spy = (signature: string, returns: string) => `
    CREATE FUNCTION public.${signature} RETURNS ${returns} LANGUAGE plpgsql AS $f$
    BEGIN
      INSERT INTO public.mallory_saw VALUES (current_user, '${signature}');
      RETURN QUERY SELECT x FROM pg_catalog.unnest(a) AS x;
    END $f$;`;
  // The stats trigger function's dynamic statements: format(text, text, …) with 3 to 6 texts.
  const formatSpy = (texts: number) => {
    const names = Array.from({ length: texts }, (_, i) => `a${i}`);
    return `
    CREATE FUNCTION public.format(f text, ${names.map((n) => `${n} text`).join(', ')}) RETURNS text
    LANGUAGE plpgsql AS $f$
    BEGIN
      INSERT INTO public.mallory_saw VALUES (current_user, 'format with ${texts} texts');
      RETURN pg_catalog.format(f, ${names.join(', ')});
    END $f$;`;
  };
  await sql
    .raw(
      `SET ROLE ${mallory};
       CREATE TABLE public.mallory_saw (who text, what text);
       GRANT INSERT ON public.mallory_saw TO PUBLIC;
       ${spy('unnest(a text[])', 'SETOF text')}
       ${spy('unnest(a timestamptz[])', 'SETOF timestamptz')}
       ${[3, 4, 5, 6].map(formatSpy).join('\n')}
       RESET ROLE;`,
    )
    .execute(database.db);
  t = await createTestApp({}, { database });
});
afterAll(async () => {
  await t?.close();
  await database?.destroy();
  await asAdmin(`DROP ROLE IF EXISTS ${mallory}`).catch(() => undefined);
});

test("When callbacks are stored, folded into the stats and removed by retention, then only PostgreSQL's own functions run, never another role's", async () => {
  const old = randomUUID();
  for (const id of [old, randomUUID()]) {
    expect((await postNative(t.publicApp, nativeFields({ id, status: 'delivered' }))).status).toBe(
      200,
    );
  }
  await sql`UPDATE messages SET last_event_at = now() - interval '40 days' WHERE id = ${old}`.execute(
    t.database.db,
  );
  expect(await foldDeltas(t.database.db)).toBeGreaterThan(0);
  const removed = await removeExpiredMessages(t.database.db, new Date(Date.now() - 30 * DAY), 50);
  expect(removed.messages).toBe(1);
  const { rows } = await sql<{ who: string; what: string }>`
    SELECT who, what FROM public.mallory_saw`.execute(t.database.db);
  expect(rows).toEqual([]);
});

test('When migrating, then a schema on the search path open to every role is named with the fix; once revoked, nothing is said', async () => {
  const migrate = async (): Promise<string[]> => {
    const said: string[] = [];
    const logger = createLogger('warn', {
      write: (line: string) => void said.push((JSON.parse(line) as { msg: string }).msg),
    });
    const { db } = createDb(database.url, 1);
    try {
      await migrateReachable(db, database.url, { logger });
    } finally {
      await db.destroy();
    }
    return said;
  };
  expect(await migrate()).toEqual([
    expect.stringContaining('every role may create objects in public'),
  ]);
  expect((await migrate())[0]).toContain('REVOKE CREATE ON SCHEMA public FROM PUBLIC');

  await sql.raw(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`).execute(database.db);
  expect(await migrate()).toEqual([]);
});

test('When the open schema is named like a reserved word, then the REVOKE it suggests quotes it', async () => {
  await sql
    .raw(`CREATE SCHEMA "user"; GRANT CREATE ON SCHEMA "user" TO PUBLIC`)
    .execute(database.db);
  try {
    const open = await database.db.connection().execute(async (connection) => {
      await sql.raw(`SET search_path = "user"`).execute(connection);
      try {
        return await schemasOpenToAll(connection);
      } finally {
        await sql.raw('RESET search_path').execute(connection);
      }
    });
    expect(open).toEqual([{ name: 'user', quoted: '"user"' }]);
  } finally {
    await sql.raw(`DROP SCHEMA "user"`).execute(database.db);
  }
});
