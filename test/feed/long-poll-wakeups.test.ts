import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from 'pg';
import type { PoolClient } from 'pg';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { createFastServer } from '../../src/http/fast-server';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { createDisposablePostgres } from '../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../ingest/support/disposable-postgres';
import { eventually, gate } from '../helpers/eventually';

/**
 * A long-poll answers "as soon as an event is there" (DESIGN §6). Its wake-ups are hints: one
 * can come while the long-poll is reading (the commit after that read's snapshot), or find
 * nothing new (the LISTEN connection coming back wakes every long-poll; another replica's hint
 * for a commit already read). Neither may cost the next commit the look interval.
 *
 * And a consumer that goes away while its page read waits for its turn (a few at once per
 * process, src/feed/feed-reads.ts) must not still cost the database that read.
 *
 * On a PostgreSQL of the file's own: the feed reads below the oldest transaction open
 * anywhere on the cluster, which other test files' transactions would move at random. The
 * feed reads through a pool of its own whose statements are counted and whose answers the
 * test can hold (a slow network, a busy event loop), after PostgreSQL took their snapshot.
 */

let primary: DisposablePostgres;
let writer: DatabaseHandle;
let reader: DatabaseHandle;
let t: TestApp;
let server: Server;
let base: string;
let statements = 0;
// While set, a feed read's answer reaches the service only once the gate opens.
let hold: ReturnType<typeof gate> | null = null;
let held = 0;

beforeAll(async () => {
  primary = await createDisposablePostgres();
  writer = createDb(primary.url, 4);
  await migrateToLatest(writer.db);
  reader = createDb(primary.url, 10);
  reader.pool.on('acquire', () => (statements += 1));
  reader.pool.on('connect', (client: PoolClient) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args) => {
      const done = args[args.length - 1];
      if (typeof done === 'function') {
        args[args.length - 1] = (error: unknown, result: unknown) => {
          const holding = hold;
          if (!holding) return done(error, result);
          held += 1;
          void holding.wait.then(() => done(error, result));
        };
      }
      return query(...args);
    };
  });
  t = await createTestApp(
    {},
    {
      database: { ...writer, url: primary.url, destroy: async () => undefined },
      readDb: reader.db,
      // Long-polls look on their own only every minute: what answers them below is a commit.
      feedPollMs: 60_000,
    },
  );
  await eventually(() => t.feedSignal.listening(), 'the feed signal listening');
  server = createFastServer(t.internalApp);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  hold?.open();
  await new Promise((resolve) => server?.close(resolve));
  await t?.close();
  await reader?.db.destroy();
  await writer?.db.destroy();
  await primary?.destroy();
});

interface Page {
  data: Array<{ message_id: string }>;
  next_cursor: string;
}

async function get(path: string, signal?: AbortSignal): Promise<{ status: number; body: Page }> {
  const res = await fetch(`${base}${path}`, {
    headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
    signal,
  });
  return { status: res.status, body: (await res.json()) as Page };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function end(): Promise<string> {
  return (await get('/v1/events?after=now')).body.next_cursor;
}

async function commitOne(): Promise<string> {
  const id = randomUUID();
  await recordEvents(writer.db, [statusEvent('sent', { messageId: id })], {
    onCommitted: t.feedSignal.committed,
  });
  return id;
}

/** Until no feed read has started for `quietMs`: every long-poll made its look and waits. */
async function settled(quietMs = 700): Promise<void> {
  let last = -1;
  while (statements !== last) {
    last = statements;
    await sleep(quietMs);
  }
}

test('When an event commits while a long-poll reads its page (after that read took its snapshot), then the long-poll answers with it at once, not at its next look', async () => {
  const cursor = await end();
  hold = gate();
  held = 0;
  const started = Date.now();
  const poll = get(`/v1/events?after=${cursor}&wait=20`);
  // The long-poll's first read has its answer — nothing yet — on its way.
  await eventually(() => held === 1, 'the first read answered');
  const id = await commitOne();
  const released = Date.now();
  const holding = hold;
  hold = null;
  holding.open();
  const answer = await poll;
  expect(answer.status).toBe(200);
  expect(answer.body.data.map((event) => event.message_id)).toEqual([id]);
  // Before: the commit's wake-up came while nobody waited, and the long-poll waited for the
  // next one (or its look a minute away), answering an empty page after its 20 s. (Bounds with
  // room for a loaded machine, still well short of those 20 s: the answer takes tens of ms
  // here. The wait is 20 s, not 8, so that the room need not be cut fine.)
  expect(Date.now() - released).toBeLessThan(10_000);
  expect(Date.now() - started).toBeLessThan(15_000);
}, 30_000);

test('When a wake-up finds nothing new (the LISTEN connection came back) and no transaction holds the feed back, then a long-poll still answers the next commit at once', async () => {
  const cursor = await end();
  const poll = get(`/v1/events?after=${cursor}&wait=20`);
  await settled();

  // The listening connection drops and comes back: every waiting long-poll is woken to look,
  // and finds nothing.
  const admin = new Client({ connectionString: primary.url });
  await admin.connect();
  try {
    const { rowCount } = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE query IN ('LISTEN sw_status_events', 'NOTIFY sw_status_events', 'SELECT 1')
         AND pid <> pg_backend_pid()`,
    );
    expect(rowCount).toBe(1);
  } finally {
    await admin.end();
  }
  await eventually(() => !t.feedSignal.listening(), 'the listening connection lost');
  await eventually(() => t.feedSignal.listening(), 'the listening connection back');
  // Long enough for looks on a timer to have stretched to a second apart (25 ms, 50 ms, …).
  await sleep(2_500);

  // Before: the long-poll had stopped listening for commits and looked on a timer instead, by
  // now a second apart, answering a commit ~1 s late, at its next look. That is judged by what
  // the long-poll does, not by the clock (a loaded machine can take a second to answer either
  // way): one listening for commits makes no look of its own (its look tick is a minute here),
  // where one on a timer makes at least one in any two seconds.
  const before = statements;
  await sleep(2_000);
  expect(statements - before).toBe(0);
  const committedAt = Date.now();
  const id = await commitOne();
  const answer = await poll;
  expect(answer.status).toBe(200);
  // So what answers is the commit's wake-up, well before the long-poll's 20 s are up.
  expect(answer.body.data.map((event) => event.message_id)).toEqual([id]);
  expect(Date.now() - committedAt).toBeLessThan(5_000);
}, 30_000);

test('When the clients of long-polls go away while their page reads wait their turn, then those reads are not run', async () => {
  const cursor = await end();
  await settled();
  hold = gate();
  held = 0;
  // Two reads run at once (a quarter of DATABASE_POOL_MAX 10): these two take the turns and
  // keep them while their answers are held.
  const first = [1, 2].map((limit) => get(`/v1/events?after=${cursor}&limit=${limit}`));
  await eventually(() => held === 2, 'two reads running');
  // Twenty more, each a read of its own (a limit of its own), queue behind them; their
  // clients give up. (Waited for on the server's side: fixed pauses can run out before a
  // loaded machine has read the requests, or their sockets' closing.)
  const arrived: IncomingMessage[] = [];
  const onRequest = (req: IncomingMessage) => {
    if (!/[?&]limit=[12]$/.test(req.url ?? '')) arrived.push(req);
  };
  server.on('request', onRequest);
  const gone = new AbortController();
  const queued = Array.from({ length: 20 }, (_, i) =>
    get(`/v1/events?after=${cursor}&limit=${i + 3}`, gone.signal).then(
      () => 'answered',
      () => 'gone',
    ),
  );
  await eventually(() => arrived.length === 20, 'the twenty reads at the server');
  server.off('request', onRequest);
  gone.abort();
  expect(new Set(await Promise.all(queued))).toEqual(new Set(['gone']));
  // The server sees the sockets close.
  await eventually(() => arrived.every((req) => req.socket.destroyed), 'their sockets closed');
  statements = 0;
  const holding = hold;
  hold = null;
  holding.open();
  for (const answer of await Promise.all(first)) expect(answer.status).toBe(200);
  await settled(500);
  // Before: all twenty were still read, one after the other, for nobody.
  expect(statements).toBe(0);
}, 30_000);
