import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// A list filter as HTTP clients send an array: the parameter repeated (axios, Python's
// requests, URLSearchParams.append) — `status=failed&status=undelivered` — means what
// `status=failed,undelivered` means. Any other parameter takes one value: given twice, it is a
// 400 that names it.

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

const WINDOW = 'created_since=2026-08-03&created_until=2026-08-04';
const AT = new Date('2026-08-03T12:00:00Z');

/** Three messages of the window: failed (cxml), undelivered (native), delivered (cxml). */
async function threeMessages() {
  const ids = { failed: randomUUID(), undelivered: randomUUID(), delivered: randomUUID() };
  await recordEvents(t.database.db, [
    statusEvent('failed', {
      messageId: ids.failed,
      api: 'cxml',
      to: '+15557770001',
      receivedAt: AT,
    }),
    statusEvent('undelivered', {
      messageId: ids.undelivered,
      api: 'native',
      to: '+15557770002',
      receivedAt: AT,
    }),
    statusEvent('delivered', {
      messageId: ids.delivered,
      api: 'cxml',
      to: '+15557770003',
      receivedAt: AT,
    }),
  ]);
  return ids;
}

/**
 * The message ids of the feed's events after `start` with `filters`, among `ours`, once `count`
 * came. Only ours: `after=now` is the end of what every open transaction may still add, so on a
 * shared PostgreSQL (another test file's open transaction) the feed after it can also hold this
 * file's earlier events. Waits up to FEED_WAIT_MS: the feed delivers an event only once every
 * transaction older than it ended on the whole cluster, and another test file may hold one open
 * for seconds (a held row, a bulk load) — CI once saw nothing in 20 s.
 */
const FEED_WAIT_MS = 60_000;

async function feedAfter(
  start: string,
  filters: string,
  count: number,
  ours: Record<string, string>,
): Promise<string[]> {
  const seen: string[] = [];
  const mine = new Set(Object.values(ours));
  let cursor = start;
  const deadline = Date.now() + FEED_WAIT_MS;
  while (seen.length < count && Date.now() < deadline) {
    const res = await get(`/v1/events?after=${cursor}&${filters}&wait=2`).expect(200);
    const ids: string[] = res.body.data.map((event: { message_id: string }) => event.message_id);
    seen.push(...ids.filter((id) => mine.has(id)));
    cursor = res.body.next_cursor;
  }
  return seen.sort();
}

const idsOf = (body: { data: Array<{ id: string }> }) => body.data.map((m) => m.id).sort();

describe('list filters given more than once', () => {
  test('When a list filter of GET /v1/messages is repeated, then it filters as its values comma-joined', async () => {
    const ids = await threeMessages();
    const wanted = [ids.failed, ids.undelivered].sort();

    const repeated = await get(`/v1/messages?status=failed&status=undelivered&${WINDOW}`).expect(
      200,
    );
    expect(idsOf(repeated.body)).toEqual(wanted);
    const joined = await get(`/v1/messages?status=failed,undelivered&${WINDOW}`).expect(200);
    expect(idsOf(repeated.body)).toEqual(idsOf(joined.body));

    // Mixed with a comma list, and naming a value twice: still the same set.
    const mixed = await get(
      `/v1/messages?status=failed,undelivered&status=failed&${WINDOW}`,
    ).expect(200);
    expect(idsOf(mixed.body)).toEqual(wanted);

    const byApi = await get(`/v1/messages?api=native&api=cxml&${WINDOW}`).expect(200);
    expect(idsOf(byApi.body)).toEqual(Object.values(ids).sort());

    // Phone numbers keep their unencoded `+` in every occurrence.
    const byTo = await get(`/v1/messages?to=+15557770001&to=%2B15557770003&${WINDOW}`).expect(200);
    expect(idsOf(byTo.body)).toEqual([ids.failed, ids.delivered].sort());

    const byCode = await get(`/v1/messages?error_code=30003&error_code=30005&${WINDOW}`).expect(
      200,
    );
    expect(byCode.body.data).toEqual([]);
  });

  test('When a repeated list names more different values than allowed, then it is a 400 as the comma list is; the same value repeated counts once', async () => {
    const distinct = Array.from({ length: 51 }, (_, k) => `error_code=${30000 + k}`).join('&');
    const res = await get(`/v1/messages?${distinct}`).expect(400);
    expect(res.body.error.details).toEqual([
      expect.objectContaining({ path: 'error_code', message: expect.stringMatching(/50/) }),
    ]);

    const same = Array.from({ length: 51 }, () => 'error_code=30003').join('&');
    await get(`/v1/messages?${same}`).expect(200);
    const statuses = Array.from({ length: 12 }, () => 'status=failed').join('&');
    await get(`/v1/messages?${statuses}`).expect(200);
    await get('/v1/messages?status=failed&status=nonsense').expect(400);
  });

  test(
    'When the change feed’s status and api filters are repeated, then it gives the events of those values only',
    async () => {
      const start = (await get('/v1/events?after=now').expect(200)).body.next_cursor as string;
      const ids = await threeMessages();

      expect(await feedAfter(start, 'status=failed&status=undelivered', 2, ids)).toEqual(
        [ids.failed, ids.undelivered].sort(),
      );
      expect(await feedAfter(start, 'api=native&api=native', 1, ids)).toEqual([ids.undelivered]);
      expect(
        await feedAfter(
          start,
          'status=failed,delivered&status=undelivered&api=cxml&api=native',
          3,
          ids,
        ),
      ).toEqual(Object.values(ids).sort());
    },
    3 * FEED_WAIT_MS,
  );

  test('When the stats’ api filter is repeated, then the stats cover those APIs', async () => {
    const window = 'created_since=2026-08-05&created_until=2026-08-06';
    const at = new Date('2026-08-05T12:00:00Z');
    await recordEvents(t.database.db, [
      statusEvent('failed', { api: 'cxml', receivedAt: at }),
      statusEvent('delivered', { api: 'native', receivedAt: at }),
    ]);
    const both = await get(`/v1/stats?api=cxml&api=native&${window}`).expect(200);
    expect(both.body).toMatchObject({ total: 2, by_status: { failed: 1, delivered: 1 } });
    const joined = await get(`/v1/stats?api=cxml,native&${window}`).expect(200);
    expect(both.body.by_status).toEqual(joined.body.by_status);
  });
});

describe('other parameters given more than once', () => {
  const cases: Array<[route: string, name: string, value: string]> = [
    ['/v1/messages', 'limit', '10'],
    ['/v1/messages', 'cursor', 'abc'],
    ['/v1/messages', 'since', '2026-08-03'],
    ['/v1/messages', 'until', '2026-08-03'],
    ['/v1/messages', 'created_since', '2026-08-03T10:00:00Z'],
    ['/v1/messages', 'created_until', '2026-08-03T10:00:00Z'],
    ['/v1/messages', 'order', 'created'],
    ['/v1/messages', 'stuck', 'true'],
    ['/v1/events', 'after', 'now'],
    ['/v1/events', 'limit', '10'],
    ['/v1/events', 'wait', '0'],
    ['/v1/stats', 'created_since', '2026-08-03'],
    ['/v1/stats', 'created_until', '2026-08-04'],
    ['/v1/stats', 'bucket', 'hour'],
    ['/v1/relays', 'state', 'dead'],
    ['/v1/relays', 'message_id', 'SM1'],
    ['/v1/relays', 'limit', '10'],
    ['/v1/relays', 'cursor', 'abc'],
  ];

  test.each(cases)(
    'When %s gets %s twice, then the answer is a 400 that names the parameter',
    async (route, name, value) => {
      const res = await get(`${route}?${name}=${value}&${name}=${value}`).expect(400);
      expect(res.body.error).toMatchObject({
        code: 'invalid_request',
        details: [
          {
            path: name,
            message: `The query parameter ${name} is given 2 times; it takes one value`,
          },
        ],
      });
    },
  );

  test('When an unknown parameter is repeated, then it is refused as unknown, by name', async () => {
    const res = await get('/v1/messages?state=failed&state=dead').expect(400);
    expect(JSON.stringify(res.body.error.details)).toMatch(/state/);
  });
});

describe('a query string past the parameters’ limit', () => {
  // Express's own parser kept the first 1,000 parameters and dropped the rest without a word:
  // a filter after them was lost and a filtered list answered unfiltered.
  const thousand = Array.from({ length: 1000 }, () => 'api=native').join('&');

  test.each(['/v1/messages', '/v1/events', '/v1/stats', '/v1/relays'])(
    'When %s gets more than 1,000 parameters, then it is a 400 too_many_parameters, not a query without the last ones',
    async (route) => {
      const res = await get(`${route}?${thousand}&status=failed`).expect(400);
      expect(res.body.error).toMatchObject({
        code: 'too_many_parameters',
        message: 'The query string has more than 1000 parameters',
      });
    },
  );

  test('When a query holds 1,000 parameters, the last one included, then each of them counts', async () => {
    const ids = await threeMessages();
    const repeated = Array.from({ length: 997 }, () => 'api=native&').join('');
    const res = await get(`/v1/messages?${repeated}api=cxml&${WINDOW}`).expect(200);
    expect(idsOf(res.body)).toEqual(expect.arrayContaining(Object.values(ids)));
    const filtered = await get(`/v1/messages?${repeated}status=failed&${WINDOW}`).expect(200);
    expect(idsOf(filtered.body)).toEqual([]);
  });
});
