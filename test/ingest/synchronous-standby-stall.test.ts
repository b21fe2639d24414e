import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';
import { eventually } from '../helpers/eventually';
import { recordUntilSpooled, spooledRecorder } from './support/spooled-recorder';
import { createDisposablePostgres } from './support/disposable-postgres';
import type { DisposablePostgres } from './support/disposable-postgres';

/**
 * With synchronous replication, a primary whose standby stops confirming (frozen, partitioned,
 * or named wrong in synchronous_standby_names) answers every read at once and commits nothing.
 * The recorder's probe took the answer to `select 1` for the database's return and the log
 * said only "database reachable again: replaying the spool" while every commit hung; the
 * replay's waits on rows those commits held locked then read as lock waits (55P03). Callbacks
 * were never lost; the operator was sent the wrong way, and each replay left one more
 * connection stuck at its COMMIT until the pool was full. The log now says why, the replay waits
 * for commits to go through, and it goes on as soon as they can (an operator's mitigation lets
 * new commits through while our abandoned ones keep waiting).
 */

let pg: DisposablePostgres;
let database: DatabaseHandle;
let spoolDir: string;
let recorder: GroupCommitRecorder;
const logged: string[] = [];

beforeAll(async () => {
  pg = await createDisposablePostgres();
  // As in production, a lock wait ends (lock_timeout: 10 s) well before a replay write does
  // (60 s); here 300 ms and 1 s.
  database = createDb(pg.url, 8, { lockTimeoutMs: 300 });
  await migrateToLatest(database.db);
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-sync-standby-'));
  recorder = await spooledRecorder(database.db, spoolDir, {
    logger: createLogger('info', { write: (line: string) => void logged.push(line) }),
    batchWaitMs: 2,
    maxInFlight: 2,
    commitTimeoutMs: 1_000,
    // Short, so that a replay started during the stall would leave a COMMIT stuck every second.
    replayTimeoutMs: 1_000,
  });
});
afterAll(async () => {
  await recorder?.drain({ deadline: performance.now() + 5_000 });
  await database?.db.destroy();
  await pg?.destroy();
  if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
});

async function alterSystem(statement: string): Promise<void> {
  await sql.raw(statement).execute(database.db);
  await sql`SELECT pg_reload_conf()`.execute(database.db);
}

const stuckCommits = async (): Promise<number> => {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'SyncRep'`.execute(
    database.db,
  );
  return rows[0]!.n;
};

const stored = async (events: readonly StatusEvent[]): Promise<number> => {
  const { rows } = await sql<{ n: number }>`
    SELECT count(DISTINCT message_id)::int AS n FROM status_events
    WHERE message_id = ANY(${events.map((event) => event.messageId)})`.execute(database.db);
  return rows[0]!.n;
};

test('When the only synchronous standby never confirms, then callbacks are spooled and acknowledged, the log says commits wait for the standby (once), no replay adds a stuck commit meanwhile, and once commits go through again every one is stored', async () => {
  // A standby name no standby has: every commit waits for it, as for a frozen standby.
  await alterSystem(
    `ALTER SYSTEM SET synchronous_standby_names = 'sw_status_test_no_such_standby'`,
  );
  let events: StatusEvent[] = [];
  try {
    events = await recordUntilSpooled(recorder);
    await eventually(
      () => logged.some((line) => line.includes('synchronous standby')),
      'the log says why nothing commits',
    );
    // No replay meanwhile: each would leave one more connection stuck at its COMMIT.
    const stuckAtFirst = await stuckCommits();
    const states = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const { database: state, spool } = recorder.status();
      states.add(`${state} ${spool.state}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect({ states: [...states], stuck: await stuckCommits() }).toEqual({
      states: ['unreachable spooling'],
      stuck: stuckAtFirst,
    });
    const said = logged.filter((line) => line.includes('synchronous standby'));
    expect(said).toHaveLength(1);
    expect(JSON.parse(said[0]!)).toMatchObject({
      level: 50,
      msg: expect.stringContaining('synchronous_standby_names'),
    });
  } finally {
    await alterSystem('ALTER SYSTEM RESET synchronous_standby_names');
  }

  await eventually(() => recorder.status().spool.state === 'idle', 'the spool replayed', 20_000);
  expect(await stored(events)).toBe(events.length);
});

test('When an operator lets commits through without the standby (synchronous_commit = local), then new callbacks are stored although our abandoned commits still wait', async () => {
  await alterSystem(
    `ALTER SYSTEM SET synchronous_standby_names = 'sw_status_test_no_such_standby'`,
  );
  let waiting: StatusEvent[] = [];
  try {
    waiting = await recordUntilSpooled(recorder);
    await alterSystem(`ALTER SYSTEM SET synchronous_commit = 'local'`);
    const later = Array.from({ length: 4 }, () => statusEvent('delivered'));
    expect(await Promise.all(later.map((event) => recorder.record(event)))).toEqual(
      later.map(() => 'recorded'),
    );
    await eventually(
      async () => (await stored(later)) === later.length,
      'the later callbacks stored',
      20_000,
    );
  } finally {
    await alterSystem('ALTER SYSTEM RESET ALL');
  }
  await eventually(() => recorder.status().spool.state === 'idle', 'the spool replayed', 20_000);
  expect(await stored(waiting)).toBe(waiting.length);
});
