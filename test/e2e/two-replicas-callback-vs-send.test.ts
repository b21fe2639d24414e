import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { sql } from 'kysely';
import request from 'supertest';
import { postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { withGroupCommit } from '../helpers/replicas';
import { listen } from '../proxy/support';
import type { Listening } from '../proxy/support';

/**
 * Several replicas on one database (kept from a cross-replica review, where it held):
 * the proxy on replica B records a native send while SignalWire's first
 * callbacks (token-authenticated) reach replicas A and B both — before, after, or at the same moment.
 * The final message row, its relay jobs and the send intents must be the same whichever.
 */

const PROJECT = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
const APP_CALLBACK = 'https://app.example.com/status';
const TO = '+15551234567';
const FROM = '+15559876543';

type Mode = 'callbacks-first' | 'proxy-first' | 'at-once';
let mode: Mode = 'proxy-first';
let upstream: Listening;
let a: TestApp;
let b: TestApp;
let lastToken = '';
let lastId = '';
let pending: Promise<unknown> = Promise.resolve();

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

function callbacks(id: string) {
  return ['sent', 'delivered'].map((status, n) => ({
    id,
    project_id: PROJECT,
    status,
    to: TO,
    from: FROM,
    body: 'hello',
    number_of_segments: 1,
    timestamp: new Date(Date.UTC(2026, 10, 1, 10, 0, 1 + n)).toISOString(),
    error_code: null,
    error_message: null,
  }));
}

async function postCallbacks(token: string, id: string) {
  const path = `/callbacks/native/${token}`;
  // Each callback reaches both replicas (SignalWire's retry of a slow answer, say).
  const statuses = await Promise.all(
    [a, b].flatMap((app) =>
      callbacks(id).map((fields) =>
        postNative(app.publicApp, fields, { path }).then((r) => r.status),
      ),
    ),
  );
  expect(statuses).toEqual([200, 200, 200, 200]);
}

const groupCommit = () => withGroupCommit({ batchMax: 50, commitTimeoutMs: 20_000 });

beforeAll(async () => {
  upstream = await listen((req, res) => {
    void (async () => {
      const sent = JSON.parse(await body(req)) as {
        status_callback: string;
        to: string;
        from: string;
      };
      const token = sent.status_callback.split('/').pop()!;
      const id = randomUUID();
      lastToken = token;
      lastId = id;
      const answer = JSON.stringify({
        id,
        from: FROM,
        to: TO,
        status: 'queued',
        kind: 'sms',
        body: 'hello',
        media: [],
        number_of_segments: 1,
        created_at: new Date(Date.UTC(2026, 10, 1, 10, 0, 0)).toISOString(),
      });
      if (mode === 'callbacks-first') await postCallbacks(token, id);
      const answering = new Promise<void>((resolve) => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(answer, () => resolve());
      });
      if (mode === 'at-once') {
        pending = Promise.all([answering, postCallbacks(token, id)]);
        await pending;
      }
    })();
  });
  a = await createTestApp({ SIGNALWIRE_SPACE_URL: upstream.url }, groupCommit());
  b = await createTestApp(
    { SIGNALWIRE_SPACE_URL: upstream.url },
    { ...groupCommit(), database: a.database },
  );
});
afterAll(async () => {
  await b.close();
  await a.close();
  await upstream.close();
});

async function sendThroughB(): Promise<string> {
  const res = await request(b.internalApp)
    .post('/api/messaging/messages')
    .auth(PROJECT, 'pt_token')
    .set('Content-Type', 'application/json')
    .send(JSON.stringify({ to: TO, from: FROM, body: 'hello', status_callback: APP_CALLBACK }));
  expect(res.status).toBe(201);
  if (mode === 'proxy-first') await postCallbacks(lastToken, lastId);
  await pending;
  return lastId;
}

async function outcome(id: string) {
  const db = a.database.db;
  const { rows } = await sql<Record<string, unknown>>`
    SELECT api, project_id, "from", "to", kind, status, raw_status, status_rank, error_code,
      conflict, num_segments, num_media, (ref IS NOT NULL) AS has_ref, sent_via_proxy,
      client_status_callback, stuck, sweep_step
    FROM messages WHERE id = ${id}`.execute(db);
  const { rows: history } = await sql<{ status: string; source: string; message_status: string }>`
    SELECT status, source, message_status FROM status_events WHERE message_id = ${id}
    ORDER BY status`.execute(db);
  const { rows: jobs } = await sql<{ url: string; n: number }>`
    SELECT url, count(*)::int AS n FROM relay_jobs WHERE message_id = ${id} GROUP BY url`.execute(
    db,
  );
  const { rows: intents } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM send_intents`.execute(db);
  return {
    message: rows[0],
    events: history.map((h) => `${h.source}:${h.status}`),
    jobs,
    intents: intents[0]!.n,
  };
}

test('When the proxy on one replica and the send’s first callbacks on another race, then the message, its relays and the intents end the same as when the proxy records first', async () => {
  mode = 'proxy-first';
  const baseline = await outcome(await sendThroughB());
  expect(baseline.jobs).toEqual([{ url: APP_CALLBACK, n: 2 }]);
  const results: Array<{ mode: Mode; differs: unknown }> = [];
  for (const m of ['callbacks-first', ...Array<Mode>(20).fill('at-once')] as Mode[]) {
    mode = m;
    const got = await outcome(await sendThroughB());
    if (JSON.stringify(got) !== JSON.stringify(baseline)) results.push({ mode: m, differs: got });
  }
  expect({ baseline, results }).toEqual({ baseline, results: [] });
}, 120_000);
