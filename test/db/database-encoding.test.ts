import { randomBytes } from 'node:crypto';
import { createDb, withDatabase } from '../../src/db/database';
import { migrateReachable, migrateToLatest } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { asAdmin } from '../helpers/test-database';

/**
 * An operator-provisioned database that is not UTF8 (README "PostgreSQL for sw-status"). In
 * LATIN1 text SignalWire sends in other scripts cannot be stored at all, and the migrations
 * failed on a typographic character of a comment with a conversion error that named no
 * encoding; SQL_ASCII (what initdb picks under a POSIX locale) migrated in silence and later
 * refused JSON escapes of non-ASCII characters. A fresh install is refused with the fix; one
 * already migrated is warned about, so that a release's rollout does not fail on it.
 */
const suffix = randomBytes(4).toString('hex');
const latin1 = `sw_test_latin1_${suffix}`;
const ascii = `sw_test_ascii_${suffix}`;
const asciiMigrated = `sw_test_ascii_migrated_${suffix}`;
const urlOf = (name: string): string => withDatabase(process.env.SW_TEST_ADMIN_URL!, name);

async function withDb<T>(
  name: string,
  use: (db: ReturnType<typeof createDb>['db']) => Promise<T>,
): Promise<T> {
  const { db } = createDb(urlOf(name), 1);
  try {
    return await use(db);
  } finally {
    await db.destroy();
  }
}

/** What migrateReachable says: the error's message, or what it logged at warn. */
async function migrate(name: string): Promise<{ refused?: string; warned: string[] }> {
  const warned: string[] = [];
  const logger = createLogger('warn', {
    write: (line: string) => void warned.push((JSON.parse(line) as { msg: string }).msg),
  });
  return withDb(name, async (db) => {
    try {
      await migrateReachable(db, urlOf(name), { logger });
      return { warned };
    } catch (error) {
      return { refused: (error as Error).message, warned };
    }
  });
}

beforeAll(async () => {
  for (const [name, encoding] of [
    [latin1, 'LATIN1'],
    [ascii, 'SQL_ASCII'],
    [asciiMigrated, 'SQL_ASCII'],
  ]) {
    await asAdmin(
      `CREATE DATABASE ${name} ENCODING '${encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
    );
  }
  // An install from before the check: migrated by an earlier release.
  await withDb(asciiMigrated, (db) => migrateToLatest(db));
});
afterAll(async () => {
  for (const name of [latin1, ascii, asciiMigrated]) {
    await asAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
});

test.each([
  ['LATIN1', latin1],
  ['SQL_ASCII', ascii],
])(
  'When a fresh database is %s, then migrating it is refused with the encoding and the fix, and nothing is created',
  async (encoding, name) => {
    const { refused } = await migrate(name);
    expect(refused).toContain(`is encoded ${encoding}, not UTF8`);
    expect(refused).toContain("ENCODING 'UTF8'");
    const tables = await withDb(name, async (db) =>
      (await db.introspection.getTables()).map((table) => table.name),
    );
    expect(tables).toEqual([]);
  },
);

test('When a SQL_ASCII database was migrated by an earlier release, then migrating it again goes on, with a warning naming the encoding', async () => {
  const { refused, warned } = await migrate(asciiMigrated);
  expect(refused).toBeUndefined();
  expect(warned).toEqual([expect.stringContaining('is encoded SQL_ASCII, not UTF8')]);
});
