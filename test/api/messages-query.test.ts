import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

function event(
  messageId: string,
  rawStatus: string,
  receivedAt: Date,
  overrides: Partial<StatusEvent> = {},
): StatusEvent {
  return statusEvent(rawStatus, { messageId, receivedAt, ...overrides });
}

describe('GET /v1/messages/:id', () => {
  test('When a message has several events, then its history is in arrival order with snake_case ISO fields', async () => {
    const id = randomUUID();
    const base = Date.parse('2026-11-20T10:00:00Z');
    await recordEvents(t.database.db, [event(id, 'queued', new Date(base), { source: 'proxy' })]);
    await recordEvents(t.database.db, [event(id, 'delivered', new Date(base + 2000))]);
    await recordEvents(t.database.db, [event(id, 'sent', new Date(base + 3000))]);
    const res = await get(`/v1/messages/${id}`).expect(200);
    expect(res.body).toMatchObject({
      id,
      api: 'cxml',
      status: 'delivered',
      error_code: null,
      conflict: false,
      created_at: '2026-11-20T10:00:00.000Z',
      last_event_at: '2026-11-20T10:00:03.000Z',
    });
    expect(res.body.history).toEqual([
      expect.objectContaining({
        status: 'queued',
        source: 'proxy',
        received_at: '2026-11-20T10:00:00.000Z',
      }),
      expect.objectContaining({ status: 'delivered', source: 'callback' }),
      expect.objectContaining({ status: 'sent', source: 'callback' }),
    ]);
    const seqs = res.body.history.map((h: { seq: number }) => h.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    expect(res.body).not.toHaveProperty('body');
  });
});

describe('GET /v1/messages', () => {
  // A few hundred messages over a handful of timestamps, so many share last_event_at and
  // the (last_event_at, id) tie-breaker is exercised.
  const ids: string[] = [];
  const base = Date.parse('2026-10-01T00:00:00Z');
  beforeAll(async () => {
    const events: StatusEvent[] = [];
    for (let i = 0; i < 320; i++) {
      const id = randomUUID();
      ids.push(id);
      const status = ['delivered', 'undelivered', 'sent', 'failed'][i % 4]!;
      events.push(
        event(id, status, new Date(base + Math.floor(i / 7) * 1000), {
          api: i % 2 === 0 ? 'cxml' : 'native',
          to: i % 5 === 0 ? '+15557777777' : '+15550000002',
          errorCode: status === 'undelivered' ? '30003' : status === 'failed' ? '30008' : null,
        }),
      );
    }
    await recordEvents(t.database.db, events);
  });

  async function pageAll(
    query: string,
    limit: number,
  ): Promise<Array<{ id: string; last_event_at: string }>> {
    const seen: Array<{ id: string; last_event_at: string }> = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 1000; pages++) {
      const res: request.Response = await get(
        `/v1/messages?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`,
      ).expect(200);
      seen.push(...res.body.data);
      cursor = res.body.next_cursor;
      if (!cursor) break;
    }
    return seen;
  }

  test('When paging through a few hundred messages, then none is skipped or repeated, newest first', async () => {
    const seen = await pageAll('since=2026-10-01T00:00:00Z&until=2026-10-02T00:00:00Z', 23);
    expect(seen).toHaveLength(ids.length);
    expect(new Set(seen.map((m) => m.id)).size).toBe(ids.length);
    expect(new Set(seen.map((m) => m.id))).toEqual(new Set(ids));
    for (let i = 1; i < seen.length; i++) {
      const [a, b] = [seen[i - 1]!, seen[i]!];
      expect(
        a.last_event_at > b.last_event_at || (a.last_event_at === b.last_event_at && a.id > b.id),
      ).toBe(true);
    }
  });

  test('When filtering by status, then only that status is returned, across pages', async () => {
    const seen = await pageAll(
      'status=undelivered&since=2026-10-01T00:00:00Z&until=2026-10-02T00:00:00Z',
      17,
    );
    expect(seen).toHaveLength(80);
    expect(seen.every((m) => (m as unknown as { status: string }).status === 'undelivered')).toBe(
      true,
    );
  });

  test('When filtering by api, to, and error_code together, then all filters apply', async () => {
    const res = await get(
      '/v1/messages?api=cxml&to=%2B15557777777&error_code=30003&limit=500',
    ).expect(200);
    const expected = ids.filter((_, i) => i % 2 === 0 && i % 5 === 0 && i % 4 === 1);
    expect(res.body.data.map((m: { id: string }) => m.id).sort()).toEqual(expected.sort());
    expect(res.body.next_cursor).toBeNull();
  });

  test.each([
    ['since=2026-10-02&until=2026-10-01', 'since must not be after until'],
    [
      'created_since=2026-10-01T00:00:01Z&created_until=2026-10-01T00:00:00Z',
      'created_since must not be after created_until',
    ],
  ])(
    'When a window is reversed (%s), then 400 invalid_window, not an empty page that hides the mistake',
    async (window, message) => {
      const res = await get(`/v1/messages?${window}`);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_window', message });
    },
  );

  test('When filtering by from and a time window, then the window is [since, until)', async () => {
    const res = await get(
      '/v1/messages?from=%2B15550000001&since=2026-10-01T00:00:01Z&until=2026-10-01T00:00:02Z',
    ).expect(200);
    expect(res.body.data).toHaveLength(7);
    expect(
      res.body.data.every(
        (m: { last_event_at: string }) => m.last_event_at === '2026-10-01T00:00:01.000Z',
      ),
    ).toBe(true);
  });

  test('When no limit is given, then a default page size with a cursor is returned', async () => {
    const res = await get('/v1/messages').expect(200);
    expect(res.body.data).toHaveLength(50);
    expect(typeof res.body.next_cursor).toBe('string');
  });
});

describe('GET /v1/messages: filters, orders and validators', () => {
  const base = Date.parse('2026-11-30T06:00:00Z');
  const ids: string[] = [];
  beforeAll(async () => {
    const events: StatusEvent[] = [];
    for (let i = 0; i < 40; i++) {
      const id = randomUUID();
      ids.push(id);
      const status = ['failed', 'undelivered', 'delivered', 'sent'][i % 4]!;
      events.push(
        event(id, status, new Date(base + i * 60_000), {
          to: '+15559990000',
          errorCode: status === 'failed' ? '30008' : status === 'undelivered' ? '30003' : null,
        }),
      );
    }
    await recordEvents(t.database.db, events);
  });

  const window = 'created_since=2026-11-30T06:00&created_until=2026-11-30T07:00';

  test('When a filter lists several values, then any of them matches', async () => {
    const res = await get(`/v1/messages?${window}&status=failed,undelivered&limit=500`).expect(200);
    expect(res.body.data).toHaveLength(20);
    expect(new Set(res.body.data.map((m: { status: string }) => m.status))).toEqual(
      new Set(['failed', 'undelivered']),
    );
    const codes = await get(`/v1/messages?${window}&error_code=30003,30008&limit=500`).expect(200);
    expect(codes.body.data).toHaveLength(20);
    await get(`/v1/messages?${window}&status=failed,bogus`).expect(400);
  });

  test('When since is a date, or a date-time without or with an offset, then it is read as UTC unless an offset says otherwise', async () => {
    const count = async (query: string) =>
      (await get(`/v1/messages?to=%2B15559990000&limit=500&${query}`).expect(200)).body.data
        .length as number;
    expect(await count('since=2026-11-30')).toBe(40);
    expect(await count('since=2026-12-01')).toBe(0);
    expect(await count('since=2026-11-30T06:30')).toBe(10);
    expect(await count('since=2026-11-30T06:30:00')).toBe(10);
    expect(await count('since=2026-11-30T07:30:00%2B01:00')).toBe(10);
    // A `+` left unencoded (a browser, curl) arrives as a space: after a time, it is the offset's.
    expect(await count('since=2026-11-30T07:30:00+01:00')).toBe(10);
    expect(await count('since=2026-11-30T07:30+0100')).toBe(10);
    // A space between date and time stays a separator.
    expect(await count('since=2026-11-30%2006:30')).toBe(10);
    expect(
      await count('created_since=2026-11-30T06:10:00.000Z&created_until=2026-11-30T06:20Z'),
    ).toBe(10);
    await get('/v1/messages?since=2026-11-31').expect(400);
    await get('/v1/messages?since=yesterday').expect(400);
  });

  test('When order=created is walked while every message changes, then no message is skipped or repeated', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let changed = false;
    do {
      const res: request.Response = await get(
        `/v1/messages?${window}&order=created&limit=7${cursor ? `&cursor=${cursor}` : ''}`,
      ).expect(200);
      seen.push(...res.body.data.map((m: { id: string }) => m.id));
      cursor = res.body.next_cursor;
      if (!changed) {
        // Mid-walk, every message gets newer activity (under order=activity they would all
        // move to the front, behind the walk).
        await recordEvents(
          t.database.db,
          ids.map((id, i) => event(id, 'read', new Date(base + 3_600_000 + i))),
        );
        changed = true;
      }
    } while (cursor);
    expect(seen).toHaveLength(40);
    expect(new Set(seen)).toEqual(new Set(ids));
    expect(seen).toEqual([...ids].reverse()); // newest first-seen first
  });

  test('When a cursor from one order is used with the other, then the answer is a 400', async () => {
    const created = await get(`/v1/messages?${window}&order=created&limit=5`).expect(200);
    await get(`/v1/messages?cursor=${created.body.next_cursor}`).expect(400);
    const activity = await get(`/v1/messages?${window}&limit=5`).expect(200);
    await get(`/v1/messages?order=created&cursor=${activity.body.next_cursor}`).expect(400);
  });

  test('When stuck=true is asked, then it is accepted and, until reconciliation runs, empty', async () => {
    const res = await get('/v1/messages?stuck=true').expect(200);
    expect(res.body).toEqual({ data: [], next_cursor: null });
    await get('/v1/messages?stuck=maybe').expect(400);
  });

  test.each([
    ['a list', '/v1/messages?limit=1', 200],
    ['a message that does not exist', `/v1/messages/${randomUUID()}`, 404],
    ['the stats', '/v1/stats', 200],
    ['the change feed', '/v1/events?limit=1', 200],
    ['the relays', '/v1/relays?limit=1', 200],
  ])(
    'When %s is answered, then no shared cache may keep it (Cache-Control: private, no-cache)',
    async (_what, path, status) => {
      const res = await get(path).expect(status);
      expect(res.headers['cache-control']).toBe('private, no-cache');
      // Without a token too: a cache must not keep the refusal for the next caller either.
      const refused = await request(t.internalApp).get(path).expect(401);
      expect(refused.headers['cache-control']).toBe('private, no-cache');
    },
  );

  test('When a page or a message is asked again with its ETag, then the answer is 304 until it changes', async () => {
    const list = await get(`/v1/messages?${window}&limit=5`).expect(200);
    expect(list.headers.etag).toMatch(/^W\/"/);
    await get(`/v1/messages?${window}&limit=5`)
      .set('If-None-Match', list.headers.etag!)
      .expect(304);

    const id = ids[0]!;
    const one = await get(`/v1/messages/${id}`).expect(200);
    await get(`/v1/messages/${id}`).set('If-None-Match', one.headers.etag!).expect(304);
    // A late event that changes nothing still lengthens the history: a new ETag.
    await recordEvents(t.database.db, [event(id, 'queued', new Date(base - 1000))]);
    const again = await get(`/v1/messages/${id}`)
      .set('If-None-Match', one.headers.etag!)
      .expect(200);
    expect(again.headers.etag).not.toBe(one.headers.etag);
    expect(again.body.history).toHaveLength(one.body.history.length + 1);
  });
});
