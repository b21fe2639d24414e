import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { recordEvents } from '../../src/messages/record-events';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { TEST_PROJECTS, statusEvent } from '../factories';
import { nativeFields, postNative } from '../helpers/callbacks';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { withGroupCommit } from '../helpers/replicas';

/**
 * Several replicas on one database (kept from a cross-replica review, where it held):
 * retention runs on both replicas while SignalWire's late receipts for the
 * expiring messages (token-authenticated, as the proxy's sends get them) reach both replicas.
 * Whichever wins each message: every receipt is stored once and relayed once to the app's
 * callback, no event or relay job is left without its message, and /v1/stats equals a scan.
 */

const DAY = 86_400_000;
const APP_CALLBACK = 'https://app.example.com/status';
let a: TestApp;
let b: TestApp;

const groupCommit = () => withGroupCommit({ batchMax: 20, commitTimeoutMs: 20_000 });

beforeAll(async () => {
  a = await createTestApp({}, groupCommit());
  b = await createTestApp({}, { ...groupCommit(), database: a.database });
});
afterAll(async () => {
  await b.close();
  await a.close();
});

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

test('When retention on two replicas removes messages whose late receipts reach both replicas at once, then each receipt is stored and relayed once and nothing is orphaned', async () => {
  const db = a.database.db;
  const sends = Array.from({ length: 80 }, () => ({
    id: randomUUID(),
    ...mintCallbackToken([TEST_TOKEN_SECRET]),
  }));
  for (const s of sends) {
    await recordEvents(db, [
      statusEvent('queued', {
        messageId: s.id,
        api: 'native',
        projectId: TEST_PROJECTS.native,
        source: 'proxy',
        receivedAt: new Date(Date.now() - 10 * DAY),
        send: { ref: s.ref, kind: 'sms', clientStatusCallback: APP_CALLBACK, body: null },
      }),
      statusEvent('sent', {
        messageId: s.id,
        api: 'native',
        projectId: TEST_PROJECTS.native,
        receivedAt: new Date(Date.now() - 10 * DAY + 1000),
      }),
    ]);
  }
  const horizon = new Date(Date.now() - 5 * DAY);
  let removing = true;
  const removed = [0, 0];
  const retention = [a, b].map(async (app, n) => {
    while (removing) {
      const step = await removeExpiredMessages(app.database.db, horizon, 3, 30);
      removed[n]! += step.messages;
      await new Promise((r) => setTimeout(r, Math.random() * 3));
    }
  });
  const receipts = sends.map((s) => ({
    fields: nativeFields({
      id: s.id,
      project_id: TEST_PROJECTS.native,
      status: 'delivered',
      timestamp: new Date().toISOString(),
    }),
    path: `/callbacks/native/${s.token}`,
  }));
  const statuses = await Promise.all([
    ...shuffle([...receipts]).map((r) =>
      postNative(a.publicApp, r.fields, { path: r.path }).then((x) => x.status),
    ),
    ...shuffle([...receipts]).map((r) =>
      postNative(b.publicApp, r.fields, { path: r.path }).then((x) => x.status),
    ),
  ]);
  removing = false;
  await Promise.all(retention);

  const { rows: perMessage } = await sql<{
    id: string;
    status: string | null;
    delivered: number;
    jobs: number;
    urls: string | null;
  }>`
    SELECT d.id, m.status,
      (SELECT count(*)::int FROM status_events e WHERE e.message_id = d.id AND e.status = 'delivered') AS delivered,
      (SELECT count(*)::int FROM relay_jobs j WHERE j.message_id = d.id) AS jobs,
      (SELECT string_agg(DISTINCT url, ',') FROM relay_jobs j WHERE j.message_id = d.id) AS urls
    FROM unnest(${sends.map((s) => s.id)}::text[]) AS d(id) LEFT JOIN messages m ON m.id = d.id`.execute(
    db,
  );
  const wrong = perMessage.filter(
    (m) => m.status !== 'delivered' || m.delivered !== 1 || m.jobs !== 1 || m.urls !== APP_CALLBACK,
  );
  const { rows: orphans } = await sql<{ events: number; jobs: number }>`
    SELECT (SELECT count(*)::int FROM status_events e WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = e.message_id)) AS events,
           (SELECT count(*)::int FROM relay_jobs j WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = j.message_id)) AS jobs`.execute(
    db,
  );
  const res = await request(a.internalApp)
    .get('/v1/stats')
    .query({
      created_since: new Date(Date.now() - 30 * DAY).toISOString(),
      created_until: new Date(Date.now() + 60_000).toISOString(),
    })
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  const { rows: scan } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM messages`.execute(
    db,
  );
  expect({
    allAcknowledged: statuses.every((s) => s === 200),
    wrong: wrong.slice(0, 5),
    orphans: orphans[0],
    statsTotal: (res.body as { total: number }).total,
    negative: Object.entries((res.body as { by_status: Record<string, number> }).by_status).filter(
      ([, n]) => n < 0,
    ),
  }).toEqual({
    allAcknowledged: true,
    wrong: [],
    orphans: { events: 0, jobs: 0 },
    statsTotal: scan[0]!.n,
    negative: [],
  });
  // Retention did remove messages the receipts raced (which replica did varies).
  expect(removed[0]! + removed[1]!).toBeGreaterThan(0);
}, 120_000);
