import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { nativeFields, postNative } from '../helpers/callbacks';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { withGroupCommit } from '../helpers/replicas';

/**
 * Several replicas on one database (kept from a cross-replica review, where it held):
 * two replicas write the same messages at once (every callback reaches
 * both, in different orders, some messages in conflict), while a consumer follows
 * /v1/events through one replica and the other. Afterwards: the feed gave every stored event
 * exactly once, each message's last feed event carries its final status, and /v1/stats equals
 * a scan of the tables.
 */

let a: TestApp;
let b: TestApp;

const groupCommit = () => ({
  ...withGroupCommit({
    recordOptions: { onCommitted: () => undefined },
    batchMax: 50,
    batchWaitMs: 2,
    commitTimeoutMs: 20_000,
  }),
  feedPollMs: 200,
});

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

interface FeedEvent {
  seq: number;
  message_id: string;
  status: string;
  message_status: string;
}

test('When two replicas write the same messages at once, then a consumer following the feed through both sees every event once and /v1/stats equals a scan', async () => {
  const start = Date.now();
  const ids = Array.from({ length: 60 }, () => randomUUID());
  const events = ids.flatMap((id, n) => {
    const at = (s: number) => new Date(start - 60_000 + s * 1000).toISOString();
    const list = [
      nativeFields({ id, status: 'queued', timestamp: at(0) }),
      nativeFields({ id, status: 'sent', timestamp: at(1) }),
      nativeFields({ id, status: 'delivered', timestamp: at(2 + (n % 3)) }),
    ];
    if (n % 3 === 0)
      list.push(nativeFields({ id, status: 'undelivered', error_code: '30003', timestamp: at(3) }));
    if (n % 5 === 0) list.push(nativeFields({ id, status: 'read', timestamp: at(6) }));
    return list;
  });

  // The consumer: follows the feed through a, then b, then a… until it is quiet.
  const seen: FeedEvent[] = [];
  let cursor: string | undefined;
  let writing = true;
  const consumer = (async () => {
    let turn = 0;
    let quiet = 0;
    while (writing || quiet < 3) {
      const app = turn++ % 2 ? b : a;
      const res = await request(app.internalApp)
        .get('/v1/events')
        .query({ limit: 37, wait: 1, ...(cursor && { after: cursor }) })
        .auth(TEST_API_TOKEN, { type: 'bearer' });
      expect(res.status).toBe(200);
      const body = res.body as { data: FeedEvent[]; next_cursor: string };
      seen.push(...body.data);
      cursor = body.next_cursor;
      if (!writing && body.data.length === 0) quiet++;
    }
  })();

  const statuses = await Promise.all([
    ...shuffle([...events]).map((f) => postNative(a.publicApp, f).then((r) => r.status)),
    ...shuffle([...events]).map((f) => postNative(b.publicApp, f).then((r) => r.status)),
  ]);
  writing = false;
  await consumer;

  const db = a.database.db;
  const { rows: stored } = await sql<{ seq: string }>`
    SELECT seq FROM status_events ORDER BY seq`.execute(db);
  const seenSeqs = seen.map((e) => e.seq).sort((x, y) => x - y);
  const duplicatesInFeed = seenSeqs.filter((s, i) => i > 0 && seenSeqs[i - 1] === s).length;
  const missing = stored.map((r) => Number(r.seq)).filter((s) => !seenSeqs.includes(s));

  // The last feed event of each message carries the message's status.
  const { rows: messages } = await sql<{ id: string; status: string }>`
    SELECT id, status FROM messages`.execute(db);
  const lastInFeed = new Map<string, string>();
  for (const e of seen) lastInFeed.set(e.message_id, e.message_status);
  const wrongLast = messages.filter((m) => lastInFeed.get(m.id) !== m.status).length;

  // /v1/stats against a scan.
  const res = await request(a.internalApp)
    .get('/v1/stats')
    .query({
      created_since: new Date(start - 3_600_000).toISOString(),
      created_until: new Date(Date.now() + 60_000).toISOString(),
    })
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  const stats = res.body as {
    total: number;
    by_status: Record<string, number>;
    conflicts: number;
  };
  const { rows: scan } = await sql<{ status: string; n: number; c: number }>`
    SELECT status, count(*)::int AS n, count(*) FILTER (WHERE conflict)::int AS c
    FROM messages GROUP BY status`.execute(db);
  const byStatus = Object.fromEntries(scan.map((r) => [r.status, r.n]));

  expect({
    allAcknowledged: statuses.every((s) => s === 200),
    storedEvents: stored.length,
    duplicatesInFeed,
    missing: missing.length,
    wrongLast,
    total: stats.total,
    by_status: Object.fromEntries(Object.entries(stats.by_status).filter(([, n]) => n !== 0)),
    conflicts: stats.conflicts,
  }).toEqual({
    allAcknowledged: true,
    storedEvents: events.length,
    duplicatesInFeed: 0,
    missing: 0,
    wrongLast: 0,
    total: messages.length,
    by_status: byStatus,
    conflicts: scan.reduce((sum, r) => sum + r.c, 0),
  });
}, 120_000);
