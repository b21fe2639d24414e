import { Client } from 'pg';
import { buildApiDocument } from '../../src/openapi/api-document';
import type { OpenApiDocument } from '../../src/openapi/api-document';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { answerChecker } from '../helpers/openapi';
import type { AnswerChecker } from '../helpers/openapi';
import { startStack } from '../e2e/stack';
import type { Stack } from '../e2e/stack';

/**
 * The query API as a dashboard integrating against it meets it: a real socket, messages sent
 * through the proxy to the simulator (whose signed callbacks reach the receiver), and every
 * answer checked against the document the service itself serves at GET /openapi.json (not
 * one the test builds): status, required headers, content type and body schema. Each API test
 * already checks its answers against the built document (test/helpers/openapi.ts); this file
 * checks that the served document is that one, and walks the routes a client would call with
 * the filters, cursors and edge cases it would send.
 */

let stack: Stack;
let served: OpenApiDocument;
let check: AnswerChecker;
const problems: string[] = [];
let ids: string[] = [];

/** Scenarios of the simulator (src/simulator/scenarios.ts), by the last four digits of To. */
const SENDS: Array<['cxml' | 'native', string, boolean]> = [
  ['cxml', '+15551231000', false], // delivered
  ['native', '+15551231000', false],
  ['cxml', '+15551230003', false], // undelivered, 30003
  ['native', '+15551230003', false],
  ['cxml', '+15551230004', false], // failed
  ['native', '+15551230004', false],
  ['cxml', '+15551230005', false], // duplicates
  ['native', '+15551230006', false], // out of order
  ['cxml', '+15551231000', true], // MMS: stops at sent
  ['native', '+15551231000', true],
];

beforeAll(async () => {
  stack = await startStack();
  const res = await fetch(`${stack.internalUrl}/openapi.json`);
  served = (await res.json()) as OpenApiDocument;
  check = answerChecker(served);
  ids = [];
  for (const [api, to, mms] of SENDS) {
    ids.push(
      await stack.send(api, to, {
        body: 'Your order has shipped',
        mms,
        statusCallback: 'http://127.0.0.1:9/app-callback',
      }),
    );
  }
  // Every callback the simulator will send has been answered (a quiet second alone can pass
  // between the out-of-order scenario's `delivered` and its late `sent` on a loaded machine).
  await stack.sim.waitForIdle();
  // Every send is settled once its message is final and has stopped changing.
  for (const [index, id] of ids.entries()) await settled(id, SENDS[index]![2]);
}, 90_000);
afterAll(() => stack.close());

/**
 * Until the message is final (an MMS: at `sent`, it gets no receipt) and neither its status nor
 * its history has changed for a second: the simulator's steps are 200 ms apart, and the
 * out-of-order scenario sends `sent` after `delivered`. A callback landing later would change
 * the answers the tests below compare (a message's ETag, a walk against one page).
 */
async function settled(id: string, mms: boolean): Promise<void> {
  let last = '';
  let since = Date.now();
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const message = await stack.message(id);
    const now = JSON.stringify(message && [message.status, message.history?.length]);
    if (now !== last) [last, since] = [now, Date.now()];
    const final = message && (message.status_rank >= 50 || (mms && message.status === 'sent'));
    if (final && Date.now() - since >= 1_000) return;
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  throw new Error(`message ${id} did not settle: ${last}`);
}

interface Got {
  status: number;
  headers: Headers;
  json: unknown;
}

/** One request as a client sends it; its answer is checked against the served document. */
async function call(
  method: string,
  url: string,
  headers: Record<string, string> = { authorization: `Bearer ${TEST_API_TOKEN}` },
): Promise<Got> {
  const res = await fetch(`${stack.internalUrl}${url}`, { method, headers });
  const body = Buffer.from(await res.arrayBuffer());
  const seen: Record<string, string> = {};
  res.headers.forEach((value, name) => (seen[name] = value));
  const problem = check({
    listener: 'internal',
    method,
    url,
    status: res.status,
    headers: seen,
    body,
  });
  if (problem) problems.push(problem);
  let json: unknown = null;
  if ((seen['content-type'] ?? '').startsWith('application/json') && body.length > 0) {
    json = JSON.parse(body.toString('utf8'));
  }
  return { status: res.status, headers: res.headers, json };
}

function noProblems(): void {
  expect(problems.splice(0)).toEqual([]);
}

/** Every subset of `items`. */
function subsets<T>(items: readonly T[]): T[][] {
  return items.reduce<T[][]>((all, item) => [...all, ...all.map((s) => [...s, item])], [[]]);
}

const page = (got: Got) =>
  got.json as { data: Array<Record<string, unknown>>; next_cursor: string | null };

describe('the document the service serves', () => {
  test('When GET /openapi.json is read, then it is the document every API test checks its answers against', () => {
    const built = buildApiDocument('test');
    expect({ ...served, info: { ...served.info, version: 'test' } }).toEqual(
      JSON.parse(JSON.stringify(built)),
    );
  });
});

describe('GET /v1/messages', () => {
  test('When it is asked with every combination of its filters, then every answer matches the document', async () => {
    const filters = [
      'status=delivered,undelivered,failed,sent',
      'api=cxml',
      'to=+15551230003',
      'from=%2B15559876543',
      'error_code=30003,unreachable_destination_handset',
      'since=2000-01-01&until=2100-01-01T00:00:00%2B01:00',
      'created_since=2000-01-01T00:00&created_until=2100-01-01',
      'stuck=false',
    ];
    let nonEmpty = 0;
    for (const combination of subsets(filters)) {
      for (const order of ['activity', 'created']) {
        const query = [...combination, `order=${order}`, 'limit=3'].join('&');
        const got = await call('GET', `/v1/messages?${query}`);
        expect(got.status).toBe(200);
        if (page(got).data.length > 0) nonEmpty++;
      }
    }
    expect(nonEmpty).toBeGreaterThan(100);
    noProblems();
  }, 60_000);

  test('When a client follows next_cursor to the end, then it gets every message once, in the order of one page', async () => {
    for (const order of ['activity', 'created']) {
      const all = page(await call('GET', `/v1/messages?order=${order}&limit=500`)).data.map(
        (m) => m.id,
      );
      expect(all).toHaveLength(ids.length);
      const walked: unknown[] = [];
      let cursor: string | null = null;
      do {
        const url: string = `/v1/messages?order=${order}&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const got = page(await call('GET', url));
        walked.push(...got.data.map((m) => m.id));
        cursor = got.next_cursor;
      } while (cursor !== null);
      expect(walked).toEqual(all);
    }
    noProblems();
  });

  test('When a message is read, then it and its whole history match the document, and its ETag gets a 304', async () => {
    for (const id of ids) {
      const got = await call('GET', `/v1/messages/${id}`);
      expect(got.status).toBe(200);
      const etag = got.headers.get('etag')!;
      expect((got.json as { history: unknown[] }).history.length).toBeGreaterThanOrEqual(2);
      const again = await call('GET', `/v1/messages/${id}`, {
        authorization: `Bearer ${TEST_API_TOKEN}`,
        'if-none-match': etag,
      });
      expect(again.status).toBe(304);
      expect(again.headers.get('etag')).toBe(etag);
    }
    noProblems();
  });

  test('When a client sends what the API refuses, then each refusal is in the document', async () => {
    const refused: Array<[string, number, Record<string, string>?]> = [
      ['/v1/messages?limit=0', 400],
      ['/v1/messages?limit=501', 400],
      ['/v1/messages?status=bogus', 400],
      ['/v1/messages?colour=red', 400],
      ['/v1/messages?cursor=forged', 400],
      ['/v1/messages?since=2026-12-05&until=2026-12-04', 400],
      ['/v1/messages/%ED%A0%80', 400],
      ['/v1/messages/00000000-0000-4000-8000-000000000000', 404],
      ['/v1/messages', 401, {}],
      ['/v1/messages', 401, { authorization: 'Bearer wrong' }],
      ['/v1/events?after=forged', 400],
      ['/v1/events?wait=31', 400],
      ['/v1/events?limit=1001', 400],
      ['/v1/stats?bucket=week', 400],
      ['/v1/stats?created_since=2026-12-04&created_until=2026-12-03', 400],
      ['/v1/relays?state=lost', 400],
    ];
    for (const [url, status, headers] of refused) {
      const got = await call('GET', url, headers);
      expect([url, got.status]).toEqual([url, status]);
    }
    expect((await call('POST', '/v1/relays/abc/retry')).status).toBe(400);
    expect((await call('POST', '/v1/relays/987654321/retry')).status).toBe(404);
    noProblems();
  });
});

describe('GET /v1/events', () => {
  test('When a consumer pages through the feed with filters, then it gets each event once and every page matches the document', async () => {
    // The feed's order is commit order (tx, seq), not seq alone: events recorded by concurrent
    // batches (the production stack's group commit) can commit in another order than their
    // seqs. A filtered walk gets every matching event an unfiltered walk before it got, in the
    // order an unfiltered walk after it gets them (background work may add events meanwhile).
    const walk = async (filter: string): Promise<Array<Record<string, unknown>>> => {
      const events: Array<Record<string, unknown>> = [];
      let cursor = '';
      for (let i = 0; i < 200; i++) {
        const got = page(await call('GET', `/v1/events?limit=4${filter}${cursor}`));
        if (got.data.length === 0) break;
        events.push(...got.data);
        cursor = `&after=${got.next_cursor}`;
      }
      const seqs = events.map((e) => e.seq);
      expect(seqs.length).toBeGreaterThan(0);
      expect(new Set(seqs).size).toBe(seqs.length);
      return events;
    };
    const filters: Array<[string, (event: Record<string, unknown>) => boolean]> = [
      [
        '&status=delivered,undelivered',
        (e) => ['delivered', 'undelivered'].includes(e.status as string),
      ],
      ['&api=native', (e) => e.api === 'native'],
      ['&status=sent&api=cxml', (e) => e.status === 'sent' && e.api === 'cxml'],
    ];
    const before = await walk('');
    const filtered = new Map<string, unknown[]>();
    for (const [filter, matches] of filters) {
      const seqs = (await walk(filter)).map((e) => e.seq);
      expect(seqs).toEqual(expect.arrayContaining(before.filter(matches).map((e) => e.seq)));
      filtered.set(filter, seqs);
    }
    const after = await walk('');
    for (const [filter, matches] of filters) {
      const seqs = filtered.get(filter)!;
      const inOrder = after.filter((e) => matches(e) && seqs.includes(e.seq)).map((e) => e.seq);
      expect(seqs).toEqual(inOrder);
    }
    noProblems();
  });

  test('When a consumer long-polls at the end of the feed, then it gets an empty page and a cursor, and with its ETag a 304', async () => {
    // An empty page's cursor stands on the horizon, the oldest writing transaction open
    // anywhere on the cluster: another test file's transactions (the cluster is shared) or a
    // late callback of the simulator's would move it between two asks, and with it the ETag.
    // So the horizon is held still by a writing transaction of the test's own, once every
    // older one has ended; events committed meanwhile wait behind it.
    const holder = new Client({ connectionString: stack.app.database.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      const { rows } = await holder.query<{ xid: string }>(
        'SELECT pg_current_xact_id()::text AS xid',
      );
      await horizonReaches(rows[0]!.xid);
      let notModified = 0;
      for (let attempt = 0; attempt < 10 && notModified === 0; attempt++) {
        const end = page(await call('GET', '/v1/events?after=now'));
        expect(end.data).toEqual([]);
        const waited = await call('GET', `/v1/events?after=${end.next_cursor}&wait=0.2`);
        if (page(waited).data.length > 0) continue;
        const again = await call('GET', `/v1/events?after=${end.next_cursor}&wait=0.2`, {
          authorization: `Bearer ${TEST_API_TOKEN}`,
          'if-none-match': waited.headers.get('etag')!,
        });
        if (again.status === 304) notModified++;
        else expect(page(again)).not.toEqual(page(waited));
      }
      expect(notModified).toBe(1);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    noProblems();
  });
});

describe('GET /v1/stats and /v1/relays, health', () => {
  test('When the stats are asked for windows full, empty and bucketed, then every answer matches the document', async () => {
    for (const query of [
      '',
      'api=cxml',
      'api=native&bucket=minute',
      'bucket=hour',
      'bucket=day',
      'created_since=2000-01-01&created_until=2000-01-02',
      'created_since=2000-01-01&created_until=2000-01-02&bucket=hour',
      'created_since=2000-01-01T00:00:00.5Z&created_until=2000-01-01T00:00:00.6Z&bucket=minute',
    ]) {
      const got = await call('GET', `/v1/stats?${query}`);
      expect([query, got.status]).toEqual([query, 200]);
    }
    noProblems();
  });

  test('When relays are listed and paged, then every answer matches the document', async () => {
    const all = page(await call('GET', '/v1/relays?limit=500')).data;
    expect(all.length).toBeGreaterThan(0);
    for (const query of [
      'state=pending',
      'state=delivered',
      'state=dead',
      `message_id=${ids[0]}`,
    ]) {
      expect((await call('GET', `/v1/relays?${query}`)).status).toBe(200);
    }
    let cursor: string | null = null;
    let walked = 0;
    do {
      const got = page(await call('GET', `/v1/relays?limit=2${cursor ? `&cursor=${cursor}` : ''}`));
      walked += got.data.length;
      cursor = got.next_cursor;
    } while (cursor !== null);
    expect(walked).toBe(all.length);
    // A pending relay's retry brings it forward; a delivered one's is refused.
    const id = all[0]!.id as number;
    expect((await call('POST', `/v1/relays/${id}/retry`)).status).toBe(200);
    await stack.app.database.db
      .updateTable('relay_jobs')
      .set({ state: 'delivered' })
      .where('id', '=', id)
      .execute();
    expect((await call('POST', `/v1/relays/${id}/retry`)).status).toBe(409);
    noProblems();
  });

  test('When health and the documents are read, then they match the document', async () => {
    for (const url of ['/healthz', '/readyz', '/openapi.json', '/docs', '/metrics', '/']) {
      expect((await call('GET', url, {})).status).toBe(200);
    }
    noProblems();
  });
});

/** Waits (up to 20 s) until no transaction older than `xid` is open anywhere on the cluster. */
async function horizonReaches(xid: string): Promise<void> {
  const probe = new Client({ connectionString: stack.app.database.url });
  await probe.connect();
  try {
    for (const until = Date.now() + 20_000; Date.now() < until;) {
      const { rows } = await probe.query<{ reached: boolean }>(
        'SELECT pg_snapshot_xmin(pg_current_snapshot()) = $1::xid8 AS reached',
        [xid],
      );
      if (rows[0]!.reached) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await probe.end();
  }
}
