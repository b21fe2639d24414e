import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { StatusEvent } from '../../src/messages/status-event';
import { eventually } from '../helpers/eventually';
import { recordUntilSpooled, spooledRecorder } from './support/spooled-recorder';
import { createDisposablePostgres } from './support/disposable-postgres';
import type { DisposablePostgres } from './support/disposable-postgres';

/**
 * The outage probe asks pg_stat_activity whether commits wait for a synchronous standby
 * (db/standby-stall.ts). A hardened database may revoke it from PUBLIC: the role then cannot
 * tell, and the replay must still go on once the database is back — an earlier version took
 * the refused query for an outage and never left spooling.
 */
let pg: DisposablePostgres;
let admin: DatabaseHandle;
let adminApp: DatabaseHandle;
let app: DatabaseHandle;
let spoolDir: string;
let recorder: GroupCommitRecorder;

beforeAll(async () => {
  pg = await createDisposablePostgres();
  admin = createDb(pg.url, 2);
  await sql.raw(`CREATE ROLE sw_status_hardened LOGIN`).execute(admin.db);
  await sql.raw(`CREATE DATABASE sw_status_hardened OWNER sw_status_hardened`).execute(admin.db);
  const adminUrl = pg.url.replace(/\/postgres$/, '/sw_status_hardened');
  adminApp = createDb(adminUrl, 1);
  await sql.raw(`REVOKE SELECT ON pg_catalog.pg_stat_activity FROM PUBLIC`).execute(adminApp.db);
  const appUrl = adminUrl.replace('postgres://postgres@', 'postgres://sw_status_hardened@');
  app = createDb(appUrl, 8);
  await migrateToLatest(app.db);
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-stall-privilege-'));
  recorder = await spooledRecorder(app.db, spoolDir, {
    batchWaitMs: 2,
    maxInFlight: 2,
    commitTimeoutMs: 1_000,
    replayTimeoutMs: 5_000,
  });
}, 60_000);
afterAll(async () => {
  await recorder?.drain({ deadline: performance.now() + 2_000 }).catch(() => undefined);
  await app?.db.destroy();
  await adminApp?.db.destroy();
  await admin?.db.destroy();
  await pg?.destroy();
  if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
});

async function setStandbyNames(names: string | null): Promise<void> {
  await sql
    .raw(
      names === null
        ? 'ALTER SYSTEM RESET synchronous_standby_names'
        : `ALTER SYSTEM SET synchronous_standby_names = '${names}'`,
    )
    .execute(admin.db);
  await sql`SELECT pg_reload_conf()`.execute(admin.db);
}

test('When the service’s role may not read pg_stat_activity, then after a stall its spool is replayed once the database commits again', async () => {
  // The app role can do its work:
  const { rows } = await sql<{ one: number }>`select 1 as one`.execute(app.db);
  expect(rows[0]!.one).toBe(1);
  const denied = await sql`select count(*) from pg_stat_activity`.execute(app.db).then(
    () => 'read',
    (error: { code?: string }) => error.code,
  );
  expect(denied).toBe('42501');

  await setStandbyNames('sw_status_test_no_such_standby');
  let events: StatusEvent[] = [];
  try {
    events = await recordUntilSpooled(recorder);
  } finally {
    await setStandbyNames(null);
  }
  // The database is fully back: a write by the app role commits at once.
  await sql`select 1`.execute(app.db);
  await eventually(() => recorder.status().spool.state === 'idle', 'the spool replayed', 15_000);
  const { rows: storedRows } = await sql<{ n: number }>`
    SELECT count(DISTINCT message_id)::int AS n FROM status_events
    WHERE message_id = ANY(${events.map((event) => event.messageId)})`.execute(app.db);
  expect(storedRows[0]!.n).toBe(events.length);
}, 60_000);
