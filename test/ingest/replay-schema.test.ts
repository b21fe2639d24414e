import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { createPublicApp } from '../../src/app';
import { normalizeCxmlCallback, normalizeNativeCallback } from '../../src/callbacks/normalize';
import { createDatabaseReadiness } from '../../src/db/database-readiness';
import { MIGRATIONS_DIR, knownMigrations, migrateToLatest } from '../../src/db/migrate';
import { schemaProblem } from '../../src/db/schema-version';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields, nativeFields } from '../helpers/callbacks';
import { testConfig } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { runSpoolCommand } from './support/spool-command';

/**
 * During a rollout a pod of the new release can start before the migration Job has run. What
 * the previous pod left in the spool must then wait for the schema — not be written (and
 * retried, or dead-lettered) against tables and columns that are not there yet — and readiness
 * says why. The operator's `spool replay` refuses such a database in one line.
 */

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-replay-schema-'));
const databases: TestDatabase[] = [];

afterAll(async () => {
  await Promise.all(databases.map((database) => database.destroy()));
  rmSync(work, { recursive: true, force: true });
});

/** A database migrated by the previous release: every migration before 0005. */
async function previousReleaseDatabase(): Promise<TestDatabase> {
  const dir = mkdtempSync(path.join(work, 'migrations-'));
  for (const file of readdirSync(MIGRATIONS_DIR)) {
    if (file.endsWith('.sql') && file < '0005')
      cpSync(path.join(MIGRATIONS_DIR, file), path.join(dir, file));
  }
  const database = await createTestDatabase(4, { migrated: false });
  databases.push(database);
  await migrateToLatest(database.db, dir);
  return database;
}

/** Callbacks a previous process acknowledged and spooled: one by token (relayed), one signed. */
async function spoolLeftBehind(dir: string): Promise<StatusEvent[]> {
  const options = { receivedAt: new Date(), storeBody: false };
  const byToken = normalizeNativeCallback(nativeFields({ status: 'sent' }), options);
  byToken.tokenRef = 'ref-of-a-send';
  byToken.relay = { method: 'POST', contentType: 'application/json', body: '', keyRef: null };
  const signed = normalizeCxmlCallback(cxmlFields({ MessageStatus: 'delivered' }), options);
  const previous = await openSpool({ dir, logger });
  await previous.append([byToken, signed]);
  await previous.close();
  return [byToken, signed];
}

async function storedEvents(database: TestDatabase, events: readonly StatusEvent[]) {
  return database.db
    .selectFrom('status_events')
    .select(['message_id'])
    .where(
      'message_id',
      'in',
      events.map((e) => e.messageId),
    )
    .execute();
}

test('When the spool is replayed before the migrations ran, then it waits (readiness says why) and replays everything once they have', async () => {
  const database = await previousReleaseDatabase();
  const dir = mkdtempSync(path.join(work, 'spool-'));
  const events = await spoolLeftBehind(dir);
  const known = await knownMigrations();
  const spool = await openSpool({ dir, logger });
  const recorder = createGroupCommitRecorder({
    db: database.db,
    logger,
    spool,
    batchMax: 50,
    batchWaitMs: 2,
    queueMax: 100,
    maxInFlight: 2,
    probeIntervalMs: 50,
    replayBackoffMs: { initial: 20, max: 100 },
    schemaProblem: () => schemaProblem(database.db, known),
  });
  const app = createPublicApp({
    config: testConfig(),
    logger,
    db: database.db,
    recorder,
    lifecycle: {
      draining: false,
      ingest: recorder,
      database: createDatabaseReadiness({ db: database.db, logger, known }),
    },
  });
  try {
    recorder.start();
    await eventually(
      () => recorder.status().spool.waiting_for_schema !== undefined,
      'the replay waiting for the schema',
    );
    const waiting = recorder.status().spool.waiting_for_schema;
    expect(waiting).toMatch(/0005_send_intents(, \w+)* not applied/);
    const ready = await request(app).get('/readyz').expect(503);
    expect(ready.body.spool).toMatchObject({ state: 'replaying', depth: 2 });
    expect(ready.body.spool.waiting_for_schema).toBe(waiting);
    // Nothing was tried against the old schema: no retries, no dead letters, nothing stored.
    expect(recorder.stats()).toMatchObject({ replayRetries: 0, deadLettered: 0, replayed: 0 });
    expect(await storedEvents(database, events)).toHaveLength(0);

    await migrateToLatest(database.db);
    await eventually(() => recorder.mode() === 'direct', 'the spool replayed');
    expect(await storedEvents(database, events)).toHaveLength(2);
    expect(recorder.stats()).toMatchObject({ replayed: 2, deadLettered: 0 });
    expect(recorder.status().spool).not.toHaveProperty('waiting_for_schema');
    await request(app).get('/readyz').expect(200);
  } finally {
    await recorder.drain();
  }
});

test('When the spool command is asked to replay into a schema this release cannot write to, then it refuses in one line and keeps the spool', async () => {
  const database = await previousReleaseDatabase();
  const dir = mkdtempSync(path.join(work, 'spool-'));
  await spoolLeftBehind(dir);
  const result = await runSpoolCommand(['replay', dir], { DATABASE_URL: database.url });
  expect(result.code).toBe(1);
  expect(result.stderr.trim().split('\n')).toEqual([
    expect.stringMatching(
      /^refusing to replay .+ into .+: database schema too old: 0005_send_intents(, \w+)* not applied .*run the migrations/,
    ),
  ]);
  const spool = await openSpool({ dir, logger });
  expect(spool.depth()).toBe(2);
  await spool.close();
});
