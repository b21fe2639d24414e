import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Client } from 'pg';
import request from 'supertest';
import type { DatabaseHandle } from '../../src/db/database';
import { feedCursors } from '../../src/feed/feed-cursor';
import { checkFeedEpoch } from '../../src/feed/feed-epoch';
import { createLogger } from '../../src/logger';
import type { HotStandby } from '../db/support/hot-standby';
import { startReplicaStack } from '../db/support/replica-stack';
import type { ReplicaStack } from '../db/support/replica-stack';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * After a feed reset, a consumer reading history below retention's expiry mark holds the long
 * form `pos.mark.sN` (N: the reset's step), the mark beyond its position, so fromCursor's
 * keepStep is false (feed.routes.ts). A page served by a standby that has not replayed the
 * reset yet (replay lag, up to MAX_REPLICA_LAG_MS) shows no step beyond the new position, so
 * stepBeyond is false too; once the consumer passes the mark the cursor handed back is the
 * SHORT form, dropping the step N it was judged against. The next request, on a server that
 * has the reset, judges that stepless cursor against the reset step and answers 410
 * cursor_expired, though the cursor was issued after the reset and missed nothing.
 */

let stack: ReplicaStack | undefined;
let standby: HotStandby;
let writer: DatabaseHandle;
let t: TestApp;
let c: Client;

beforeAll(async () => {
  stack = await startReplicaStack();
  ({ standby, writer, t } = stack);
  c = new Client({ connectionString: stack.primary.url });
  await c.connect();
}, 120_000);

afterAll(async () => {
  await c?.end().catch(() => undefined);
  await stack?.close();
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });
const cursors = feedCursors([TEST_TOKEN_SECRET]);

async function insertEvent(prefix: string): Promise<{ tx: string; seq: number }> {
  const inserted = await c.query<{ tx: string; seq: string }>(
    `INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
       dedupe_key, raw, message_status)
     VALUES ($1, 'cxml', 'delivered', 'delivered', 'callback', now(),
       decode(md5(random()::text), 'hex'), '{}', 'delivered') RETURNING tx::text AS tx, seq`,
    [`${prefix}-${randomUUID()}`],
  );
  return { tx: inserted.rows[0]!.tx, seq: Number(inserted.rows[0]!.seq) };
}

test('When a consumer below the expiry mark crosses it on a standby that has not replayed a feed reset yet, then the cursor handed back keeps the reset step and is still followed once the reset is replayed (not 410)', async () => {
  const logger = createLogger('silent');
  const e1 = await insertEvent('e1');
  const e2 = await insertEvent('e2');
  await insertEvent('e3');
  // Retention removed up to e2's position earlier (its step and the expiry mark, as
  // REMOVAL_STEP and the mark update record them).
  await sql`UPDATE sw_status_retention SET removed_tx = ${e2.tx}::xid8, removed_seq = ${e2.seq}`.execute(
    writer.db,
  );
  await sql`INSERT INTO sw_status_feed_removals (step, removed_tx, removed_seq)
            VALUES (1, ${e2.tx}::xid8, ${e2.seq})`.execute(writer.db);
  expect(await checkFeedEpoch(writer.db, logger)).toBe('noted');
  await standby.caughtUp();
  await standby.pauseReplay();
  let next: string;
  let resetStep = 0;
  try {
    // A failover: the primary finds another timeline and records the reset (a step above 1).
    await sql`UPDATE sw_status_feed_epoch SET timeline = timeline + 1`.execute(writer.db);
    expect(await checkFeedEpoch(writer.db, logger)).toBe('reset');
    const { rows } = await sql<{ step: string }>`
      SELECT max(step)::text AS step FROM sw_status_feed_removals`.execute(writer.db);
    resetStep = Number(rows[0]!.step);
    expect(resetStep).toBeGreaterThan(1);
    // A consumer that began reading the retained history after the reset, on the primary:
    // judged against the reset's step, its position e1 below the mark e2 (the form the route
    // issues).
    const cursor = cursors.encode(e1, e2, resetStep);
    // Its next page comes from the standby, which has not replayed the reset.
    const page = await get(`/v1/events?after=${cursor}&limit=100`);
    expect(page.status).toBe(200);
    next = page.body.next_cursor as string;
  } finally {
    await standby.resumeReplay();
  }
  await standby.caughtUp();
  // The cursor handed back must still say it was judged against the reset...
  const decoded = cursors.decode(next);
  // ...and is followed once the standby has the reset.
  const again = await get(`/v1/events?after=${next}&limit=100`);
  expect({ status: again.status, code: again.body.error?.code, step: decoded.removalStep }).toEqual(
    { status: 200, code: undefined, step: resetStep },
  );
}, 60_000);
