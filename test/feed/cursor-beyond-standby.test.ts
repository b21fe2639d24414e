import { sql } from 'kysely';
import request from 'supertest';
import type { DatabaseHandle } from '../../src/db/database';
import { feedCursors } from '../../src/feed/feed-cursor';
import type { HotStandby } from '../db/support/hot-standby';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { startReplicaStack } from '../db/support/replica-stack';
import type { ReplicaStack } from '../db/support/replica-stack';

/**
 * With DATABASE_READ_URL the feed reads a hot standby (test/db/support/hot-standby.ts), whose
 * snapshot trails the primary's by its replay delay. A cursor issued from a less delayed
 * snapshot — the primary during a rollout, another standby behind the same URL — is beyond
 * the standby's for that moment: it is held while the standby replays, not refused. A cursor
 * beyond what even the primary has reached is refused there too, once replay had its time
 * (STANDBY_CATCH_UP_MS in src/feed/feed.routes.ts).
 */

let standby: HotStandby;
let writer: DatabaseHandle;
let reader: DatabaseHandle;
let t: TestApp;

let stack: ReplicaStack | undefined;
beforeAll(async () => {
  stack = await startReplicaStack();
  ({ standby, writer, reader, t } = stack);
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

const cursors = feedCursors([TEST_TOKEN_SECRET]);

async function snapshot(db: DatabaseHandle['db']): Promise<{ xmin: bigint; xmax: bigint }> {
  const { rows } = await sql<{ xmin: string; xmax: string }>`
    SELECT pg_snapshot_xmin(s)::text AS xmin, pg_snapshot_xmax(s)::text AS xmax
    FROM pg_current_snapshot() s`.execute(db);
  return { xmin: BigInt(rows[0]!.xmin), xmax: BigInt(rows[0]!.xmax) };
}

test('When a cursor from the primary is ahead of a standby that has not replayed it yet, then the standby holds it until it has, and answers 200', async () => {
  // The app's first answer costs more than the rest (its checks warm up): not in the timing.
  await get('/v1/events?after=now').expect(200);
  await standby.caughtUp();
  await standby.pauseReplay();
  try {
    // The primary moves on by transactions the standby has not replayed.
    for (let i = 0; i < 3; i++) await sql`SELECT pg_current_xact_id()`.execute(writer.db);
    // What after=now gives on the primary: beyond everything the standby has seen.
    const { xmin: end } = await snapshot(writer.db);
    expect(end).toBeGreaterThan((await snapshot(reader.db)).xmax);

    const started = Date.now();
    const answer = get(`/v1/events?after=${cursors.encode({ tx: String(end), seq: 0 })}`).then(
      (res) => ({ res, took: Date.now() - started }),
    );
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await standby.resumeReplay();
    const { res, took } = await answer;
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual([]);
    // Held while the replay was paused, though the request did not ask to wait.
    expect(took).toBeGreaterThanOrEqual(900);
  } finally {
    await standby.resumeReplay();
  }
}, 30_000);

test('When a cursor is beyond what even the primary has reached, then the standby refuses it with 410 cursor_expired once replay had its time, before the long-poll ends', async () => {
  await standby.caughtUp();
  const foreign = cursors.encode({
    tx: String((await snapshot(writer.db)).xmax + 1_000_000n),
    seq: 0,
  });
  const started = Date.now();
  const res = await get(`/v1/events?after=${foreign}&wait=25`);
  const took = Date.now() - started;
  expect(res.status).toBe(410);
  expect(res.body.error.code).toBe('cursor_expired');
  // It says a lagging replica may be why, not only another deployment or a restore.
  expect(res.body.error.message).toMatch(/read replica has replayed within 5 s/);
  // STANDBY_CATCH_UP_MS (5 s), not the 25 s wait.
  expect(took).toBeGreaterThanOrEqual(4_500);
  expect(took).toBeLessThan(15_000);
}, 30_000);
