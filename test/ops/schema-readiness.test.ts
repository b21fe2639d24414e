import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import request from 'supertest';
import { createPublicApp } from '../../src/app';
import { checkedAgainstOpenApi } from '../helpers/openapi';
import { createDatabaseReadiness } from '../../src/db/database-readiness';
import { MIGRATIONS_DIR, knownMigrations, migrateToLatest } from '../../src/db/migrate';
import { judgeSchema, migrationVersion } from '../../src/db/schema-version';
import type { Lifecycle } from '../../src/http/health.routes';
import { createLogger } from '../../src/logger';
import { directRecorder } from '../../src/messages/event-recorder';
import { testConfig } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * Readiness and the schema version, on real databases: a release is ready on the schema it
 * ships, and on a newer one whose migrations say it is still safe there; not on an older
 * one, nor on a newer one marked unsafe for it. The rolling-update rule (src/db/schema-version.ts)
 * is exercised with a migration directory one migration ahead of the release's.
 */

const execFileAsync = promisify(execFile);

let work: string;
const databases: TestDatabase[] = [];

beforeAll(() => {
  work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-schema-'));
});
afterAll(async () => {
  await Promise.all(databases.map((database) => database.destroy()));
  rmSync(work, { recursive: true, force: true });
});

async function database(migrated = true): Promise<TestDatabase> {
  const created = await createTestDatabase(2, { migrated });
  databases.push(created);
  return created;
}

/** The release's migrations plus one more, as the next release would ship them. */
function nextRelease(name: string, sql: string): string {
  const dir = mkdtempSync(path.join(work, 'next-'));
  cpSync(MIGRATIONS_DIR, dir, { recursive: true });
  writeFileSync(path.join(dir, `${name}.sql`), sql);
  return dir;
}

/** The public app as main.ts wires readiness, with the log lines it writes. */
async function service(target: TestDatabase) {
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = createLogger('info', {
    write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }),
  });
  const readiness = createDatabaseReadiness({
    db: target.db,
    logger,
    known: await knownMigrations(),
  });
  const lifecycle: Lifecycle = { draining: false, database: readiness };
  // Its answers are checked against the OpenAPI document, as test-app.ts's are.
  const app = checkedAgainstOpenApi(
    createPublicApp({
      config: testConfig(),
      logger,
      db: target.db,
      recorder: directRecorder(target.db),
      lifecycle,
    }),
    'public',
  );
  // The request log's own lines (a 503 is logged at error level) are not readiness's.
  const said = (level: number) =>
    lines.filter((line) => line.level >= level && line.msg !== 'request').map((line) => line.msg);
  return { app, said, probe: () => request(app).get('/readyz') };
}

const ADDITIVE = 'CREATE TABLE next_release_feature (id bigint PRIMARY KEY);';
const BREAKING = `ALTER TABLE messages RENAME COLUMN body TO body_text;
UPDATE sw_status_schema SET oldest_reader = GREATEST(oldest_reader, 9000);`;

describe('the compatibility rule', () => {
  const known = ['0001_init', '0002_tokens'];

  test.each([
    ['the same migrations', { applied: known, oldestReader: 0 }, 'ok'],
    ['a migration missing', { applied: ['0001_init'], oldestReader: 0 }, 'too_old'],
    ['nothing applied', { applied: [], oldestReader: 0 }, 'too_old'],
    ['a newer additive one', { applied: [...known, '0003_feed'], oldestReader: 0 }, 'ahead'],
    [
      'a newer one safe from this version',
      { applied: [...known, '0003_feed'], oldestReader: 2 },
      'ahead',
    ],
    [
      'a newer one unsafe for this version',
      { applied: [...known, '0003_feed'], oldestReader: 3 },
      'too_new',
    ],
  ])('When the database has %s, then the verdict is %s', (_label, found, state) => {
    expect(judgeSchema(known, found).state).toBe(state);
  });

  test('When a migration is named, then its version is the number it starts with', () => {
    expect(migrationVersion('0004_relay')).toBe(4);
    expect(migrationVersion('init')).toBeNaN();
  });
});

describe('readiness and the schema version', () => {
  test('When the database was never migrated, then /readyz answers 503 saying the schema is too old, once in the log, and 200 after the migration', async () => {
    const target = await database(false);
    const { probe, said } = await service(target);

    for (let i = 0; i < 3; i++) {
      const res = await probe();
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({
        status: 'unavailable',
        database: 'ok',
        schema: { state: 'too_old', missing: await knownMigrations() },
      });
      expect(res.body.reason).toMatch(/^database schema too old: 0001_init.*run the migrations/);
    }
    expect(said(50)).toEqual([expect.stringMatching(/^database schema too old/)]);

    expect(await migrateToLatest(target.db)).toEqual(await knownMigrations());
    const res = await probe();
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'ready', database: 'ok', schema: { state: 'ok' } });
    expect(res.body.reason).toBeUndefined();
  });

  test('When the next release adds a table, then this release stays ready on the newer schema', async () => {
    const target = await database();
    const { probe } = await service(target);
    expect((await probe()).status).toBe(200);

    const next = nextRelease('9000_additive', ADDITIVE);
    expect(await migrateToLatest(target.db, next)).toEqual(['9000_additive']);
    const res = await probe();
    expect(res.status).toBe(200);
    // oldest_reader as this release's own migrations left it (0007 marks releases before 0006).
    expect(res.body.schema).toMatchObject({ state: 'ahead', version: 9000, oldest_reader: 6 });
  });

  test('When the next release breaks older code and says so, then this release turns unready with the reason', async () => {
    const target = await database();
    const { probe, said } = await service(target);
    expect((await probe()).status).toBe(200);

    await migrateToLatest(target.db, nextRelease('9000_breaking', BREAKING));
    const res = await probe();
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({
      status: 'unavailable',
      database: 'ok',
      schema: { state: 'too_new', version: 9000, oldest_reader: 9000 },
    });
    expect(res.body.reason).toMatch(/^database schema too new: 9000 is safe only for releases/);
    await probe();
    expect(said(50)).toEqual([expect.stringMatching(/^database schema too new/)]);
  });
});

describe('the migration command on a database ahead of it (a rollback)', () => {
  test('When the newer migrations are additive, then it succeeds with nothing to do', async () => {
    const target = await database();
    await migrateToLatest(target.db, nextRelease('9000_additive', ADDITIVE));
    await expect(migrateToLatest(target.db)).resolves.toEqual([]);
  });

  test('When a newer migration is unsafe for this release, then it refuses with the reason', async () => {
    const target = await database();
    await migrateToLatest(target.db, nextRelease('9000_breaking', BREAKING));
    await expect(migrateToLatest(target.db)).rejects.toThrow(/database schema too new/);
  });

  test('When the rollback’s migration Job runs (the CLI), then its one line names the database’s newer schema, not this release’s latest as the database’s', async () => {
    const target = await database();
    await migrateToLatest(target.db, nextRelease('9000_additive', ADDITIVE));
    const { stdout } = await execFileAsync(
      process.execPath,
      ['--import', 'tsx', 'src/db/migrate-cli.ts'],
      {
        cwd: path.resolve(__dirname, '../..'),
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: target.url, LOG_LEVEL: 'info' },
      },
    );
    const known = await knownMigrations();
    const v = (n: number) => String(n).padStart(4, '0');
    expect(stdout).toContain(
      `nothing to migrate: the database: database schema 9000 is ahead of this release (${v(migrationVersion(known.at(-1)!))})`,
    );
    expect(stdout).not.toContain('is already at');
  });
});
