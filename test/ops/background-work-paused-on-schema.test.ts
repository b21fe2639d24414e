import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import { createDatabaseReadiness } from '../../src/db/database-readiness';
import { MIGRATIONS_DIR, knownMigrations, migrateToLatest } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { createReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { createRelay } from '../../src/relay/relay';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { createRetention } from '../../src/retention/retention';
import { startStatsCompactor } from '../../src/stats/stats-compactor';
import { statusEvent } from '../factories';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp, TEST_SIGNING_KEY } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually, seedProxiedMessage, startCustomerApp } from '../relay/support';
import type { CustomerApp } from '../relay/support';

/**
 * A newer release's breaking migration (one that raises sw_status_schema.oldest_reader past
 * this release) takes this release's pods out of the load balancer (/readyz: too_new). Their
 * background work went on meanwhile with the old release's idea of the tables: relays, lookups,
 * retention and the stats fold. It now pauses with the traffic, and resumes when the schema is
 * one this release may write to again (DatabaseReadiness.schemaSuitable).
 */

let t: TestApp;
let app: CustomerApp;
let work: string;
let worker: RelayWorker | undefined;

beforeAll(async () => {
  t = await createTestApp({ RELAY_RETRY_SCHEDULE: '50ms' });
  app = await startCustomerApp(TEST_SIGNING_KEY);
  work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-paused-'));
});
afterAll(async () => {
  await worker?.stop();
  await app.close();
  await t.close();
  rmSync(work, { recursive: true, force: true });
});

/** This release's migrations and a newer release's breaking one, applied to the test database. */
async function applyBreakingMigration(): Promise<void> {
  const dir = mkdtempSync(path.join(work, 'next-'));
  cpSync(MIGRATIONS_DIR, dir, { recursive: true });
  writeFileSync(
    path.join(dir, '9000_breaking.sql'),
    'UPDATE sw_status_schema SET oldest_reader = GREATEST(oldest_reader, 9000);',
  );
  expect(await migrateToLatest(t.database.db, dir)).toEqual(['9000_breaking']);
}

const DAY_MS = 86_400_000;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('When a newer release’s breaking migration is applied, then the relay sends nothing until the schema is this release’s again', async () => {
  // Its own background checks, no probe: as under `npm start` or docker.
  const readiness = createDatabaseReadiness({
    db: t.database.db,
    logger: createLogger('silent'),
    known: await knownMigrations(),
    intervalMs: 50,
    recheckMs: 100,
  });
  // Not seen yet: nothing is begun on a schema not known to be this release's.
  expect(readiness.schemaSuitable()).toBe(false);
  readiness.start();
  await eventually(() => readiness.schemaSuitable());

  await applyBreakingMigration();
  await eventually(() => !readiness.schemaSuitable());

  let looks = 0;
  worker = createRelay({
    config: t.config,
    db: t.database.db,
    logger: t.deps.logger,
    paused: () => {
      looks++;
      return !readiness.schemaSuitable();
    },
    tuning: { pollMs: 20 },
  });
  worker.start();
  const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/paused'));
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'delivered' })).expect(
    200,
  );
  await pause(1_000);
  // The worker has looked a few times since the job was queued (a loaded machine may not
  // have given it a turn in the pause): else the check below could not fail.
  const queuedAt = looks;
  await eventually(() => looks >= queuedAt + 3);
  expect(app.received.filter((relay) => relay.path === '/paused')).toEqual([]);
  const { rows } = await sql<{ state: string; attempts: number }>`
    SELECT state, attempts FROM relay_jobs WHERE message_id = ${id}`.execute(t.database.db);
  expect(rows).toEqual([{ state: 'pending', attempts: 0 }]);

  // The newer release is rolled back and its marker lowered: this release may write again.
  await sql`UPDATE sw_status_schema SET oldest_reader = 0`.execute(t.database.db);
  try {
    await eventually(() => readiness.schemaSuitable());
    worker.wake();
    await eventually(() => app.received.some((relay) => relay.path === '/paused'));
  } finally {
    readiness.stop();
  }
});

test('When the schema is not this release’s, then the stats fold leaves the deltas alone until it is', async () => {
  let unsuitable = true;
  let rounds = 0;
  const pending = async () =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM stats_deltas`.execute(t.database.db))
      .rows[0]!.n;
  await postCxml(t.publicApp, cxmlFields({ MessageStatus: 'sent' })).expect(200);
  expect(await pending()).toBeGreaterThan(0);
  const compactor = startStatsCompactor({
    db: t.database.db,
    logger: createLogger('silent'),
    intervalMs: 20,
    paused: () => {
      rounds++;
      return unsuitable;
    },
  });
  try {
    await pause(300);
    // Rounds were made while paused (else the check below could not fail).
    await eventually(() => rounds >= 3);
    expect(await pending()).toBeGreaterThan(0);
    unsuitable = false;
    await eventually(async () => (await pending()) === 0);
  } finally {
    await compactor.stop();
  }
});

test('When the schema is not this release’s, then retention removes nothing until it is', async () => {
  let unsuitable = true;
  let rounds = 0;
  const old = randomUUID();
  await recordEvents(t.database.db, [
    statusEvent('delivered', { messageId: old, receivedAt: new Date(Date.now() - 40 * DAY_MS) }),
  ]);
  const kept = async () =>
    (await t.database.db.selectFrom('messages').select('id').where('id', '=', old).execute())
      .length === 1;
  const retention = createRetention({
    db: t.database.db,
    logger: createLogger('silent'),
    registry: new Registry(),
    options: {
      retentionDays: 30,
      pauseMs: 0,
      intervalMs: 20,
      paused: () => {
        rounds++;
        return unsuitable;
      },
    },
  })!;
  retention.start();
  try {
    await pause(300);
    // Rounds were made while paused (else the check below could not fail).
    await eventually(() => rounds >= 3);
    expect(await kept()).toBe(true);
    unsuitable = false;
    await eventually(async () => !(await kept()));
  } finally {
    await retention.stop();
  }
});

test('When the schema is not this release’s, then the sweep looks nothing up until it is', async () => {
  let unsuitable = true;
  let turns = 0;
  const looked: string[] = [];
  const id = randomUUID();
  await recordEvents(t.database.db, [
    statusEvent('sent', {
      messageId: id,
      projectId: 'p-paused',
      receivedAt: new Date(Date.now() - 60_000),
    }),
  ]);
  const sweep = createReconcileWorker({
    db: t.database.db,
    logger: createLogger('silent'),
    lookup: {
      lookup: async (target) => {
        looked.push(target.id);
        return { kind: 'failed', error: 'not_found', unavailable: false };
      },
    },
    schedule: [50, 100],
    rate: 100,
    projects: ['p-paused'],
    storeBody: false,
    pollMs: 20,
    paused: () => {
      turns++;
      return unsuitable;
    },
  });
  sweep.start();
  try {
    await pause(300);
    // Turns were taken while paused (else the check below could not fail).
    await eventually(() => turns >= 3);
    expect(looked).toEqual([]);
    unsuitable = false;
    await eventually(() => looked.includes(id));
  } finally {
    await sweep.stop();
  }
});
