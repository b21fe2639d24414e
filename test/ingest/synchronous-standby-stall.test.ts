import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { statusEvent } from '../factories';
import { eventually } from '../helpers/eventually';
import { createDisposablePostgres } from './support/disposable-postgres';
import type { DisposablePostgres } from './support/disposable-postgres';

/**
 * With synchronous replication, a primary whose standby stops confirming (frozen, partitioned,
 * or named wrong in synchronous_standby_names) answers every read at once and commits nothing.
 * The recorder's probe used to take the answer to `select 1` for the database's return: the
 * replica said "database reachable again: replaying the spool" and /readyz `database: ok`
 * while every commit hung, and the replay's waits on rows those commits held locked read as
 * lock waits (55P03). Callbacks were never lost; the operator was sent the wrong way.
 */

let pg: DisposablePostgres;
let database: DatabaseHandle;
let spoolDir: string;
let recorder: GroupCommitRecorder;
const logged: string[] = [];

beforeAll(async () => {
  pg = await createDisposablePostgres();
  database = createDb(pg.url, 8);
  await migrateToLatest(database.db);
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-sync-standby-'));
  const logger = createLogger('info', { write: (line: string) => void logged.push(line) });
  recorder = createGroupCommitRecorder({
    db: database.db,
    logger,
    spool: await openSpool({ dir: spoolDir, logger }),
    batchMax: 50,
    batchWaitMs: 2,
    queueMax: 1_000,
    maxInFlight: 2,
    commitTimeoutMs: 1_000,
    replayTimeoutMs: 5_000,
    probeIntervalMs: 100,
    replayBackoffMs: { initial: 100, max: 500 },
  });
  recorder.start();
});
afterAll(async () => {
  await recorder?.drain({ deadline: Date.now() + 5_000 });
  await database?.db.destroy();
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
    .execute(database.db);
  await sql`SELECT pg_reload_conf()`.execute(database.db);
}

test('When the only synchronous standby never confirms, then callbacks are spooled and acknowledged, the replica says the database cannot write and why (once), and once commits go through again every one is stored', async () => {
  // A standby name no standby has: every commit waits for it, as for a frozen standby.
  await setStandbyNames('sw_status_test_no_such_standby');
  const events = Array.from({ length: 6 }, () => statusEvent('delivered'));
  try {
    const outcomes = await Promise.all(events.map((event) => recorder.record(event)));
    expect(outcomes).toEqual(events.map(() => 'recorded'));

    // Probed every 100 ms for two seconds: the database answers, its commits do not.
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { database: state, spool } = recorder.status();
      seen.add(`${state} ${spool.state}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect([...seen]).toEqual(['unreachable spooling']);
    const said = logged.filter((line) => line.includes('synchronous standby'));
    expect(said).toHaveLength(1);
    expect(JSON.parse(said[0]!)).toMatchObject({
      level: 50,
      msg: expect.stringContaining('synchronous_standby_names'),
    });
  } finally {
    await setStandbyNames(null);
  }

  await eventually(() => recorder.status().spool.state === 'idle', 'the spool replayed', 20_000);
  const { rows } = await sql<{ id: string }>`
    SELECT DISTINCT message_id AS id FROM status_events
    WHERE message_id = ANY(${events.map((event) => event.messageId)})`.execute(database.db);
  expect(rows).toHaveLength(events.length);
});
