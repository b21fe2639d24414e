import { sql } from 'kysely';
import request from 'supertest';
import type { DatabaseHandle } from '../../src/db/database';
import type { HotStandby } from '../db/support/hot-standby';
import { TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';
import { startReplicaStack } from '../db/support/replica-stack';
import type { ReplicaStack } from '../db/support/replica-stack';

/**
 * DESIGN §13: with DATABASE_READ_URL, lists read the replica and writes stay on the primary.
 * GET /v1/relays is a list — every open status page polls it (`state=dead&limit=20`) on each
 * refresh — and POST /v1/relays/:id/retry a write. Shown against a real hot standby
 * (test/db/support/hot-standby.ts) whose replay is paused: what the primary got since the pause
 * is missing from a list read on the standby, and a retry of it finds it on the primary.
 */

let standby: HotStandby;
let writer: DatabaseHandle;
let t: TestApp;

let stack: ReplicaStack | undefined;
beforeAll(async () => {
  stack = await startReplicaStack();
  ({ standby, writer, t } = stack);
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const relayIds = async (path: string): Promise<number[]> => {
  const res = await request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(res.status).toBe(200);
  return (res.body.data as Array<{ id: number }>).map((relay) => relay.id);
};

test('With DATABASE_READ_URL, the relay list is read from the standby, and a retry is written to the primary', async () => {
  await standby.caughtUp();
  await standby.pauseReplay();
  let id = 0;
  try {
    const { rows } = await sql<{ id: string }>`
      INSERT INTO relay_jobs (message_id, url, host, method, payload, state, attempts)
      VALUES ('relay-replica-1', 'https://app.example/hook', 'https://app.example:443', 'POST',
        '\\x00'::bytea, 'dead', 7)
      RETURNING id`.execute(writer.db);
    id = Number(rows[0]!.id);
    // The standby has not replayed the new dead relay: the list does not have it yet.
    expect(await relayIds('/v1/relays?state=dead&limit=20')).not.toContain(id);

    // The retry is a write: the primary has the relay and takes it.
    const retried = await request(t.internalApp)
      .post(`/v1/relays/${id}/retry`)
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(200);
    expect(retried.body).toMatchObject({ id, state: 'pending' });
  } finally {
    await standby.resumeReplay();
  }
  await eventually(
    async () => (await relayIds('/v1/relays?state=pending&limit=20')).includes(id),
    'the standby to replay the retried relay',
  );
}, 60_000);
