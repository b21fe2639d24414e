import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';

/**
 * A pod's outage spool outlives its release: the volume is replayed by whichever pod opens it
 * next, after a rolling update one of the next release (README, "What survives what"). The
 * fixture is a segment as the service's process wrote it (src/main.ts at d6876b7, with the
 * tests' signing key and token secret, PostgreSQL cut off, STORE_BODY=true), not one built
 * with today's encoder, so a change to the spool's format, or to what replay makes of its
 * fields, that would drop or misread what an earlier release acknowledged fails here. It holds,
 * in the order they came: the send proxy's records of a native and a compatibility send (each
 * with its token ref, the app's callback URL and the text), the simulator's callbacks on each
 * send's token URL (4 native, 3 compatibility, each with the relay's copy) and one signed
 * callback without a token, acknowledged twice. Replay checks no token's age, so the fixture
 * does not expire. A new format version gets a fixture of its own, beside this one.
 */

const FIXTURE = path.join(__dirname, 'fixtures', 'spool-segment-v1.jsonl');
const NATIVE = 'dac0f983-1e7e-4d00-be31-2e8fc60ab775';
const COMPAT = 'fac2f429-ab81-4fa4-aabb-6f03bb4ae91e';
const SIGNED = '6c74764e-6f23-4b43-ac10-4e600dc13d5e';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
let dir: string;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-earlier-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await database.destroy();
});

interface FixtureLine {
  event: { source: string; tokenRef?: string; relay?: { body: string } };
}

async function fixtureLines(): Promise<string[]> {
  return (await readFile(FIXTURE, 'utf8')).trim().split('\n');
}

/**
 * Replays the fixture's lines (those `keep` keeps) as the spool of a starting pod into `db`,
 * until the spool is empty.
 */
async function replayFixture(
  db: TestDatabase['db'],
  keep: (line: FixtureLine) => boolean = () => true,
): Promise<void> {
  const lines = (await fixtureLines()).filter((line) => keep(JSON.parse(line) as FixtureLine));
  await writeFile(path.join(dir, 'spool-00000000000000000001.jsonl'), `${lines.join('\n')}\n`);
  const spool = await openSpool({ dir, logger });
  expect(spool.depth()).toBe(lines.length);
  const recorder = createGroupCommitRecorder({
    db,
    logger,
    spool,
    batchMax: 50,
    batchWaitMs: 1,
    queueMax: 100,
    maxInFlight: 2,
    storeBody: true,
  });
  recorder.start();
  try {
    await eventually(() => spool.depth() === 0, 'the spool replayed');
  } finally {
    await recorder.drain();
    await spool.close();
  }
}

test('When a pod replays a spool segment an earlier run wrote, then every event lands once, bound to its send, with its relays', async () => {
  await replayFixture(database.db);

  const { rows: messages } = await sql<{
    id: string;
    status: string;
    events: number;
    ref: string | null;
    sent_via_proxy: boolean;
    client_status_callback: string | null;
    body: string | null;
  }>`
    SELECT m.id, m.status, m.ref, m.sent_via_proxy, m.client_status_callback, m.body,
           (SELECT count(*)::int FROM status_events e WHERE e.message_id = m.id) AS events
    FROM messages m ORDER BY m.id`.execute(database.db);
  expect(messages).toEqual([
    {
      id: SIGNED,
      status: 'delivered',
      events: 1, // acknowledged twice, stored once
      ref: null,
      sent_via_proxy: false,
      client_status_callback: null,
      body: null,
    },
    {
      id: NATIVE,
      status: 'delivered',
      events: 5, // the send's record, queued, initiated, sent, delivered
      ref: 'mxfxa0rqouPctEug',
      sent_via_proxy: true,
      client_status_callback: 'https://app.example.com/sms-status?app=native',
      body: 'upgrade native',
    },
    {
      id: COMPAT,
      status: 'delivered',
      events: 4, // the send's record, queued, sent, delivered
      ref: 'm1Bq323myZiJ8kGM',
      sent_via_proxy: true,
      client_status_callback: 'https://app.example.com/sms-status?app=compat',
      body: 'upgrade test',
    },
  ]);

  // Each token callback is relayed to its send's app with the bytes SignalWire sent.
  const relayed = (await fixtureLines())
    .map((line) => JSON.parse(line) as FixtureLine)
    .filter(({ event }) => event.tokenRef !== undefined)
    .map(({ event }) => event.relay!.body)
    .sort();
  const { rows: jobs } = await sql<{ url: string; payload: Buffer; state: string }>`
    SELECT url, payload, state FROM relay_jobs ORDER BY id`.execute(database.db);
  expect(jobs.map(({ payload }) => payload.toString('base64')).sort()).toEqual(relayed);
  expect(jobs.filter(({ url }) => url.endsWith('app=native'))).toHaveLength(4);
  expect(jobs.filter(({ url }) => url.endsWith('app=compat'))).toHaveLength(3);
  expect(new Set(jobs.map(({ state }) => state))).toEqual(new Set(['pending']));
});

test('When the same segment is replayed again (a pod stopped before removing it), then nothing is stored twice', async () => {
  await replayFixture(database.db);

  const { rows } = await sql<{ events: number; jobs: number }>`
    SELECT (SELECT count(*)::int FROM status_events) AS events,
           (SELECT count(*)::int FROM relay_jobs) AS jobs`.execute(database.db);
  expect(rows[0]).toEqual({ events: 10, jobs: 7 });
});

test('When only its callbacks are replayed (the sends were recorded elsewhere, later), then each message is bound to the send its token names', async () => {
  const elsewhere = await createTestDatabase();
  try {
    await replayFixture(elsewhere.db, ({ event }) => event.source !== 'proxy');

    const { rows } = await sql<{ id: string; ref: string | null; events: number }>`
      SELECT m.id, m.ref,
             (SELECT count(*)::int FROM status_events e WHERE e.message_id = m.id) AS events
      FROM messages m ORDER BY m.id`.execute(elsewhere.db);
    expect(rows).toEqual([
      { id: SIGNED, ref: null, events: 1 },
      { id: NATIVE, ref: 'mxfxa0rqouPctEug', events: 4 },
      { id: COMPAT, ref: 'm1Bq323myZiJ8kGM', events: 3 },
    ]);
  } finally {
    await elsewhere.destroy();
  }
});
