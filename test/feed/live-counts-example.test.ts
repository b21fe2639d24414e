import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { sql } from 'kysely';
import request from 'supertest';
import { feedCursors } from '../../src/feed/feed-cursor';
import { createFastServer } from '../../src/http/fast-server';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';

/**
 * examples/live-counts.js, run as a user runs it (its own Node process, over HTTP), keeps the
 * same counts as the stats API while messages move through their statuses.
 */

let t: TestApp;
let server: Server;
let child: ChildProcess | undefined;
beforeAll(async () => {
  t = await createTestApp();
  server = createFastServer(t.internalApp);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  child?.kill('SIGKILL');
  await new Promise((resolve) => server.close(resolve));
  await t.close();
});

interface Line {
  counts: Record<string, number>;
  delivery_rate: number | null;
  cursor: string;
}

test('When messages change while the example follows the feed, then its live counts and delivery rate equal the stats', async () => {
  const started = new Date(Date.now() - 1000);
  const lines: Line[] = [];
  child = spawn(
    process.execPath,
    [path.join(__dirname, '..', '..', 'examples', 'live-counts.js')],
    {
      env: {
        PATH: process.env.PATH ?? '',
        SW_STATUS_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        SW_STATUS_TOKEN: TEST_API_TOKEN,
        STATS_EVERY_MS: '0',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const complete = buffer.split('\n');
    buffer = complete.pop()!;
    for (const line of complete) lines.push(JSON.parse(line) as Line);
  });
  await eventually(() => lines.length > 0, 'the example started at the end of the feed');

  const record = (events: Parameters<typeof recordEvents>[1]) =>
    recordEvents(t.database.db, events, { onCommitted: t.feedSignal.committed });
  const ids = Array.from({ length: 30 }, () => randomUUID());
  await record(ids.map((id) => statusEvent('queued', { messageId: id, source: 'proxy' })));
  await record(ids.map((id) => statusEvent('sent', { messageId: id })));
  await record(
    ids.map((id, i) =>
      i % 3 === 0
        ? statusEvent('undelivered', { messageId: id, errorCode: '30003' })
        : statusEvent('delivered', { messageId: id }),
    ),
  );
  // Late `sent` callbacks: they move nothing.
  await record(ids.slice(0, 10).map((id) => statusEvent('sent', { messageId: id })));

  const stats = await request(t.internalApp)
    .get(`/v1/stats?created_since=${started.toISOString()}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  const expected = Object.fromEntries(
    Object.entries(stats.body.by_status as Record<string, number>).filter(([, n]) => n > 0),
  );
  expect(expected).toEqual({ delivered: 20, undelivered: 10 });
  await eventually(
    () => {
      const last = lines[lines.length - 1]!;
      return (
        isDeepStrictEqual(last.counts, expected) && last.delivery_rate === stats.body.delivery_rate
      );
    },
    `the example's counts to reach ${JSON.stringify(expected)} (last: ${JSON.stringify(lines[lines.length - 1])})`,
  );
}, 60_000);

test('When its saved cursor is answered 410 cursor_expired, then the example reads the current state anew and follows on from the end, its counts equal to the stats', async () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { followFeed } = require('../../examples/live-counts.js') as {
    followFeed: (options: Record<string, unknown>) => Promise<Line>;
  };
  const since = new Date(); // after the messages of the test before
  const ids = Array.from({ length: 12 }, () => randomUUID());
  await recordEvents(
    t.database.db,
    ids.map((id, i) => statusEvent(i % 4 === 0 ? 'failed' : 'delivered', { messageId: id })),
  );
  // A cursor this database never reached (saved before a restore from a dump, say): signed
  // with this deployment's secret, beyond every transaction id the cluster has issued.
  const { rows } = await sql<{ xmax: string }>`
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`.execute(t.database.db);
  const saved = feedCursors([TEST_TOKEN_SECRET]).encode({
    tx: String(BigInt(rows[0]!.xmax) + 1_000_000n),
    seq: 0,
  });

  const controller = new AbortController();
  const seen: Line[] = [];
  const following = followFeed({
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    token: TEST_API_TOKEN,
    cursor: saved,
    since,
    statsEveryMs: 0,
    signal: controller.signal,
    onCounts: (state: Line) => seen.push(state),
  });
  try {
    await eventually(
      () => isDeepStrictEqual(seen.at(-1)?.counts, { delivered: 9, failed: 3 }),
      `the counts read anew (last: ${JSON.stringify(seen.at(-1))})`,
    );
    // And it follows the feed from the end it took: a later move is counted.
    await recordEvents(t.database.db, [statusEvent('delivered', { messageId: ids[0]! })], {
      onCommitted: t.feedSignal.committed,
    });
    await eventually(
      () => isDeepStrictEqual(seen.at(-1)?.counts, { delivered: 10, failed: 2 }),
      `the later move (last: ${JSON.stringify(seen.at(-1))})`,
    );
    expect(seen.at(-1)!.cursor).not.toBe(saved);
  } finally {
    controller.abort();
    await following;
  }
}, 60_000);
