import http from 'node:http';
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import request from 'supertest';
import { sql } from 'kysely';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { applyEvent } from '../../src/messages/projection';
import type { MessageState } from '../../src/messages/projection';
import type { StatusEvent } from '../../src/messages/status-event';
import { STATUS_RANK } from '../../src/messages/statuses';
import type { CanonicalStatus } from '../../src/messages/statuses';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  TEST_TOKEN_SECRET,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { TEST_PROJECTS } from '../factories';

jest.setTimeout(300_000);

/**
 * Model-based (from a fuzzing review, where it held): random sequences of callbacks (random statuses, provider timestamps, receive
 * order, SignalWire retries, concurrent sends to two replicas on one database) over a few
 * messages, then reads, checked against a model: the stored state is the pure fold of the
 * stored history, the history has no duplicate, every acknowledged callback is in it, the feed
 * walked to its end lists every event once, and /v1/stats agrees with a scan of `messages`.
 */

let a: TestApp;
let b: TestApp;
const servers: http.Server[] = [];
const startedAt = new Date(Date.now() - 60_000);
beforeAll(async () => {
  a = await createTestApp({
    RATE_LIMIT_PUBLIC_PER_MINUTE: '10000000',
    RATE_LIMIT_QUERY_PER_MINUTE: '10000000',
  });
  b = await createTestApp(
    { RATE_LIMIT_PUBLIC_PER_MINUTE: '10000000', RATE_LIMIT_QUERY_PER_MINUTE: '10000000' },
    { database: a.database },
  );
  for (const app of [a, b]) {
    const server = http.createServer(app.publicApp);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
  }
});
afterAll(async () => {
  for (const s of servers) await new Promise((resolve) => s.close(resolve));
  await b.close();
  await a.close();
});

const STATUSES = [
  'queued',
  'sending',
  'initiated',
  'sent',
  'delivered',
  'undelivered',
  'failed',
  'read',
  'received',
  'Delivered',
  'bogus',
];
const CODE_FOR: Record<string, string | null> = { undelivered: '30003', failed: '30007' };

interface Msg {
  id: string;
  api: 'cxml' | 'native';
  token: string | null;
}
interface Cb {
  msg: number;
  status: string;
  withCode: boolean;
  tsOffsetSec: number | null; // native only; null = no timestamp
}
type Action =
  | { kind: 'cb'; cb: Cb; app: number }
  | { kind: 'dup'; which: number; app: number }
  | { kind: 'pair'; cb1: Cb; cb2: Cb }
  | { kind: 'read'; msg: number }
  | { kind: 'burst'; cbs: Cb[]; apps: number[] };

const cbArb = (n: number) =>
  fc.record({
    msg: fc.nat({ max: n - 1 }),
    status: fc.constantFrom(...STATUSES),
    withCode: fc.boolean(),
    tsOffsetSec: fc.oneof(
      fc.constant(null),
      fc.integer({ min: -300, max: 300 }),
      fc.constant(7200),
    ),
  });
const actionArb = (n: number): fc.Arbitrary<Action> =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('cb' as const),
        cb: cbArb(n),
        app: fc.nat({ max: 1 }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('dup' as const),
        which: fc.nat(),
        app: fc.nat({ max: 1 }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant('pair' as const), cb1: cbArb(n), cb2: cbArb(n) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('read' as const), msg: fc.nat({ max: n - 1 }) }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('burst' as const),
        cbs: fc.array(cbArb(n), { minLength: 2, maxLength: 8 }),
        apps: fc.array(fc.nat({ max: 1 }), { minLength: 8, maxLength: 8 }),
      }),
    },
  );

const base = Date.parse('2026-12-07T12:00:00Z');

function build(m: Msg, cb: Cb) {
  const path = `/callbacks/${m.api}${m.token ? `/${m.token}` : ''}`;
  const code = cb.withCode ? (CODE_FOR[cb.status] ?? null) : null;
  if (m.api === 'cxml') {
    const pairs: Array<[string, string]> = [
      ['MessageSid', m.id],
      ['MessageStatus', cb.status],
      ['AccountSid', TEST_PROJECTS.cxml],
      ...(code ? ([['ErrorCode', code]] as Array<[string, string]>) : []),
    ];
    const body = new URLSearchParams(pairs).toString();
    return {
      path,
      body,
      type: 'application/x-www-form-urlencoded',
      sig: signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, pairs),
      key: { raw: cb.status.toLowerCase(), code, ts: null as string | null },
    };
  }
  const ts =
    cb.tsOffsetSec === null
      ? null
      : new Date(Date.now() + cb.tsOffsetSec * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  void base;
  const body = JSON.stringify({
    id: m.id,
    project_id: TEST_PROJECTS.native,
    status: cb.status,
    error_code: code,
    error_message: code ? 'err' : null,
    ...(ts ? { timestamp: ts } : {}),
  });
  return {
    path,
    body,
    type: 'application/json',
    sig: signJsonBody(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, body),
    key: { raw: cb.status.toLowerCase(), code, ts },
  };
}

type Built = ReturnType<typeof build>;
async function post(app: number, x: Built) {
  const req = request(servers[app]!).post(x.path).set('Content-Type', x.type);
  if (!x.path.split('/')[3]) req.set('X-SignalWire-Signature', x.sig);
  const res = await req.send(x.body);
  if (res.status !== 200) {
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
  }
  return res.status === 200;
}

interface HistoryRow {
  seq: number;
  status: CanonicalStatus;
  raw_status: string;
  error_code: string | null;
  error_message: string | null;
  source: string;
  provider_timestamp: string | null;
  received_at: string;
}

function fold(api: 'cxml' | 'native', id: string, rows: HistoryRow[]): MessageState {
  let state: MessageState | null = null;
  for (const r of rows) {
    const event: StatusEvent = {
      messageId: id,
      api,
      source: r.source as StatusEvent['source'],
      projectId: null,
      status: r.status,
      rawStatus: r.raw_status,
      errorCode: r.error_code,
      errorMessage: r.error_message,
      from: null,
      to: null,
      numSegments: null,
      numMedia: null,
      providerTimestamp: r.provider_timestamp ? new Date(r.provider_timestamp) : null,
      receivedAt: new Date(r.received_at),
      raw: {},
    };
    state = applyEvent(state, event);
  }
  return state!;
}

async function getMessage(app: TestApp, id: string) {
  const res = await request(app.internalApp)
    .get(`/v1/messages/${id}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  return res;
}

const lastSeen = new Map<string, { etag: string; body: unknown }>();
async function checkMessage(m: Msg, acked: Array<Built['key']>) {
  for (const app of [a, b]) {
    const prev = lastSeen.get(m.id);
    if (prev) {
      const cond = await request(app.internalApp)
        .get(`/v1/messages/${m.id}`)
        .set('If-None-Match', prev.etag)
        .auth(TEST_API_TOKEN, { type: 'bearer' });
      if (cond.status === 304) {
        const now = await getMessage(app, m.id);
        expect({ stale304: true, body: now.body }).toEqual({ stale304: true, body: prev.body });
      }
    }
    const res = await getMessage(app, m.id);
    if (res.status === 200)
      lastSeen.set(m.id, { etag: String(res.headers['etag']), body: res.body });
    if (acked.length === 0) {
      expect([200, 404]).toContain(res.status);
      continue;
    }
    expect(res.status).toBe(200);
    const history = res.body.history as HistoryRow[];
    // No duplicates in the history (DESIGN §3 dedupe key).
    const keys = history.map((h) =>
      JSON.stringify([h.raw_status.toLowerCase(), h.error_code ?? '', h.provider_timestamp ?? '']),
    );
    expect(new Set(keys).size).toBe(keys.length);
    // Arrival order = seq order, no repeated seq.
    const seqs = history.map((h) => h.seq);
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
    // Every acknowledged callback is in the history.
    for (const k of acked) {
      const found = history.some(
        (h) =>
          h.raw_status.toLowerCase() === k.raw &&
          (h.error_code ?? null) === k.code &&
          (k.ts === null
            ? true
            : h.provider_timestamp !== null &&
              Date.parse(h.provider_timestamp) === Date.parse(k.ts)),
      );
      expect({ ack: k, found }).toEqual({ ack: k, found: true });
    }
    // Status and error code: the fold of the stored history, in any order.
    const folded = fold(m.api, m.id, history);
    const reversed = fold(m.api, m.id, [...history].reverse());
    const shown = { status: res.body.status, error_code: res.body.error_code };
    expect(shown).toEqual({ status: folded.status, error_code: folded.errorCode });
    expect({ status: reversed.status }).toEqual({ status: folded.status });
    // Conflict: two different final statuses in the history (DESIGN §3).
    const finals = new Set(history.map((h) => h.status).filter((s) => STATUS_RANK[s] === 50));
    expect({ conflict: res.body.conflict, history: history.map((h) => h.status) }).toEqual({
      conflict: finals.size >= 2,
      history: history.map((h) => h.status),
    });
  }
}

const feedEvents: Array<
  HistoryRow & { message_id: string; api: 'cxml' | 'native'; message_status: string }
> = [];
async function walkFeed(app: TestApp): Promise<number[]> {
  const seen: number[] = [];
  feedEvents.length = 0;
  let cursor: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const res = await request(app.internalApp)
      .get('/v1/events')
      .query({ limit: 37, ...(cursor ? { after: cursor } : {}) })
      .auth(TEST_API_TOKEN, { type: 'bearer' });
    expect(res.status).toBe(200);
    for (const e of res.body.data) {
      seen.push(Number(e.seq));
      feedEvents.push(e);
    }
    cursor = res.body.next_cursor;
    if (res.body.data.length === 0) return seen;
  }
  throw new Error('feed did not end');
}

async function checkFeedAndStats() {
  const { rows } = await sql<{
    seq: string;
  }>`SELECT seq::text FROM status_events ORDER BY seq`.execute(a.database.db);
  const all = rows.map((r) => Number(r.seq)).sort((x, y) => x - y);
  for (const app of [a, b]) {
    // The feed lags a commit until no older transaction is in flight (its horizon: another
    // replica's, a background worker's), never skips one: walked again until it has caught up.
    let seen = await walkFeed(app);
    const deadline = Date.now() + 20_000;
    while (seen.length < all.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      seen = await walkFeed(app);
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort((x, y) => x - y)).toEqual(all);
    // message_status: the fold of the message's events up to this one, in feed order.
    const prefix = new Map<string, HistoryRow[]>();
    for (const e of feedEvents) {
      const rows = prefix.get(e.message_id) ?? [];
      rows.push(e);
      prefix.set(e.message_id, rows);
      const folded = fold(e.api, e.message_id, rows);
      expect({ seq: e.seq, message_status: e.message_status }).toEqual({
        seq: e.seq,
        message_status: folded.status,
      });
    }
  }
  const until = new Date(Date.now() + 60_000).toISOString();
  const res = await request(a.internalApp)
    .get('/v1/stats')
    .query({ created_since: startedAt.toISOString(), created_until: until, bucket: 'minute' })
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(res.status).toBe(200);
  const scan = await sql<{ status: string; n: string; conflicts: string }>`
    SELECT status, count(*)::text AS n, count(*) FILTER (WHERE conflict)::text AS conflicts FROM messages
     WHERE created_at >= ${startedAt} AND created_at < ${new Date(until)} GROUP BY status`.execute(
    a.database.db,
  );
  const byStatus = Object.fromEntries(scan.rows.map((r) => [r.status, Number(r.n)]));
  const total = scan.rows.reduce((s, r) => s + Number(r.n), 0);
  const conflicts = scan.rows.reduce((s, r) => s + Number(r.conflicts), 0);
  const errScan = await sql<{ api: string; error_code: string; n: string }>`
    SELECT api, error_code, count(*)::text AS n FROM messages
     WHERE created_at >= ${startedAt} AND created_at < ${new Date(until)} AND error_code IS NOT NULL
     GROUP BY 1, 2`.execute(a.database.db);
  const errs = (x: Array<{ api: string; error_code: string; count: number }>) =>
    x.map((e) => `${e.api} ${e.error_code} ${e.count}`).sort();
  expect(errs(res.body.by_error)).toEqual(
    errs(errScan.rows.map((r) => ({ ...r, count: Number(r.n) }))),
  );
  const minuteScan = await sql<{ m: Date; n: string }>`
    SELECT date_trunc('minute', created_at, 'UTC') AS m, count(*)::text AS n FROM messages
     WHERE created_at >= ${startedAt} AND created_at < ${new Date(until)} GROUP BY 1`.execute(
    a.database.db,
  );
  const seriesShown = Object.fromEntries(
    (res.body.series as Array<{ start: string; total: number }>)
      .filter((x) => x.total > 0)
      .map((x) => [Date.parse(x.start), x.total]),
  );
  expect(seriesShown).toEqual(
    Object.fromEntries(minuteScan.rows.map((r) => [new Date(r.m).getTime(), Number(r.n)])),
  );
  const shownByStatus = Object.fromEntries(
    Object.entries(res.body.by_status as Record<string, number>).filter(([, n]) => n > 0),
  );
  expect({
    total: res.body.total,
    by_status: shownByStatus,
    conflicts: res.body.conflicts,
  }).toEqual({
    total,
    by_status: byStatus,
    conflicts,
  });
}

test('When callbacks come in any order, retried, split over two replicas, then each message is the fold of its stored history, the history holds every acknowledged callback once, and the feed and the stats agree with the tables', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.constantFrom<'cxml' | 'native'>('cxml', 'native'), {
        minLength: 1,
        maxLength: 3,
      }),
      fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
      fc.array(actionArb(3), { minLength: 3, maxLength: 24 }),
      async (apis, tokens, actions) => {
        const msgs: Msg[] = apis.map((api, i) => ({
          id: randomUUID(),
          api,
          token: tokens[i] ? mintCallbackToken([TEST_TOKEN_SECRET]).token : null,
        }));
        const n = msgs.length;
        const sent: Array<{ msg: number; x: Built }> = [];
        const acked: Array<Array<Built['key']>> = msgs.map(() => []);
        for (const act of actions) {
          if (act.kind === 'cb') {
            const i = act.cb.msg % n;
            const x = build(msgs[i]!, act.cb);
            sent.push({ msg: i, x });
            if (await post(act.app, x)) acked[i]!.push(x.key);
          } else if (act.kind === 'dup') {
            if (sent.length === 0) continue;
            const { msg, x } = sent[act.which % sent.length]!;
            if (await post(act.app, x)) acked[msg]!.push(x.key);
          } else if (act.kind === 'pair') {
            const i1 = act.cb1.msg % n;
            const i2 = act.cb2.msg % n;
            const x1 = build(msgs[i1]!, act.cb1);
            const x2 = build(msgs[i2]!, act.cb2);
            sent.push({ msg: i1, x: x1 }, { msg: i2, x: x2 });
            const [ok1, ok2] = await Promise.all([post(0, x1), post(1, x2)]);
            if (ok1) acked[i1]!.push(x1.key);
            if (ok2) acked[i2]!.push(x2.key);
          } else if (act.kind === 'burst') {
            // Several callbacks at once, each maybe twice (a retry), spread over both replicas.
            const xs = act.cbs.flatMap((cb, j) => {
              const i = cb.msg % n;
              const x = build(msgs[i]!, cb);
              sent.push({ msg: i, x });
              return act.apps[j]! === 0
                ? [{ i, x, app: 0 }]
                : [
                    { i, x, app: 0 },
                    { i, x, app: 1 },
                  ];
            });
            const oks = await Promise.all(xs.map(({ x, app }) => post(app, x)));
            xs.forEach(({ i, x }, j) => {
              if (oks[j]) acked[i]!.push(x.key);
            });
          } else {
            const i = act.msg % n;
            await checkMessage(msgs[i]!, acked[i]!);
          }
        }
        for (let i = 0; i < n; i++) await checkMessage(msgs[i]!, acked[i]!);
        await checkFeedAndStats();
      },
    ),
    { numRuns: 30 },
  );
});
