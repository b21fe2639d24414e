import fc from 'fast-check';
import { sql } from 'kysely';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// The time bounds of the query API (`since`/`until`, `created_since`/`created_until`) as
// PostgreSQL itself reads the same text: a window of any precision, offset or spelling selects
// exactly the messages a scan with that text as a timestamptz selects.

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
  // One message per millisecond, a few of them twice: every stored instant is a whole
  // millisecond, so a bound between two of them must fall on the right side of each.
  const events = Array.from({ length: 24 }, (_, k) =>
    statusEvent('delivered', { receivedAt: new Date(BASE + (k % 20)) }),
  );
  await recordEvents(t.database.db, events);
});
afterAll(() => t.close());

const BASE = Date.parse('2026-10-10T10:00:00.000Z');

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

/** The ids a scan selects with PostgreSQL reading the bounds (no offset: UTC). */
async function scan(column: 'created_at' | 'last_event_at', since: string, until: string) {
  return t.database.db.transaction().execute(async (trx) => {
    await sql`SET LOCAL timezone = 'UTC'`.execute(trx);
    const { rows } = await sql<{ id: string }>`
      SELECT id FROM messages
      WHERE ${sql.ref(column)} >= ${since}::timestamptz AND ${sql.ref(column)} < ${until}::timestamptz
      ORDER BY id`.execute(trx);
    return rows.map((row) => row.id);
  });
}

const pad = (n: number, width = 2) => String(Math.abs(n)).padStart(width, '0');

/**
 * An instant near BASE written as a caller might: `T` or a space, seconds with 0–6 fraction
 * digits (PostgreSQL keeps microseconds exactly), and `Z`, no offset (UTC) or ±hh:mm / ±hhmm /
 * ±hh (the hour alone: a whole-hour offset).
 */
const boundText = fc
  .record({
    micros: fc.integer({ min: -2_000, max: 22_000 }),
    digits: fc.integer({ min: 0, max: 6 }),
    offsetMinutes: fc.integer({ min: -12 * 60, max: 14 * 60 }),
    zone: fc.constantFrom('Z', '', 'colon', 'plain', 'hour'),
    separator: fc.constantFrom('T', ' '),
  })
  .map(({ micros, digits, offsetMinutes, zone, separator }) => {
    const offset =
      zone === 'colon' || zone === 'plain'
        ? offsetMinutes
        : zone === 'hour'
          ? Math.trunc(offsetMinutes / 60) * 60
          : 0;
    const wallMicros = BASE * 1000 + micros + offset * 60_000_000;
    const wall = new Date(Math.floor(wallMicros / 1000));
    const microsOfSecond = ((wallMicros % 1_000_000) + 1_000_000) % 1_000_000;
    const fraction = digits === 0 ? '' : `.${pad(microsOfSecond, 6).slice(0, digits)}`;
    const time = `${pad(wall.getUTCHours())}:${pad(wall.getUTCMinutes())}:${pad(wall.getUTCSeconds())}`;
    const date = wall.toISOString().slice(0, 10);
    const sign = offset < 0 ? '-' : '+';
    const hhmm = [pad(Math.trunc(offset / 60)), pad(offset % 60)];
    const suffix =
      zone === 'Z'
        ? 'Z'
        : zone === 'colon'
          ? `${sign}${hhmm.join(':')}`
          : zone === 'plain'
            ? `${sign}${hhmm.join('')}`
            : zone === 'hour'
              ? `${sign}${hhmm[0]}`
              : '';
    return `${date}${separator}${time}${fraction}${suffix}`;
  });

test('When since/until and created_since/created_until are written with any precision, offset or separator, then the list and the stats select what PostgreSQL selects with the same text', async () => {
  await fc.assert(
    fc.asyncProperty(boundText, boundText, async (since, until) => {
      for (const [column, from, to] of [
        ['created_at', 'created_since', 'created_until'],
        ['last_event_at', 'since', 'until'],
      ] as const) {
        const params = new URLSearchParams({ order: 'created', limit: '500' });
        params.set(from, since);
        params.set(to, until);
        const res = await get(`/v1/messages?${params}`);
        if (res.status === 400) {
          // A reversed window, which can hold nothing.
          expect(res.body.error.code).toBe('invalid_window');
          expect(await scan(column, since, until)).toEqual([]);
          continue;
        }
        expect(res.status).toBe(200);
        const ids = res.body.data.map((m: { id: string }) => m.id).sort();
        expect({ since, until, [column]: ids }).toEqual({
          since,
          until,
          [column]: await scan(column, since, until),
        });
      }
      const expected = (await scan('created_at', since, until)).length;
      const stats = await get(
        `/v1/stats?${new URLSearchParams({ created_since: since, created_until: until })}`,
      );
      if (stats.status === 400) {
        // A window holding no whole millisecond, where every stored instant lies.
        expect(stats.body.error.code).toBe('invalid_window');
        expect(expected).toBe(0);
      } else {
        expect(stats.status).toBe(200);
        expect({ since, until, total: stats.body.total }).toEqual({
          since,
          until,
          total: expected,
        });
      }
    }),
    { numRuns: 150 },
  );
}, 60_000);

test('When a bound has a fraction finer than a millisecond, then [since, until) holds at the millisecond', async () => {
  const at = '2026-10-10T10:00:00.002';
  const count = async (query: string) =>
    (await get(`/v1/messages?${query}`).expect(200)).body.data.length;
  // Two messages were first seen at .002: after .0021 neither, before .0021 both.
  expect(await count(`created_since=${at}1Z&created_until=${at}9Z`)).toBe(0);
  expect(await count(`since=${at}1Z&until=2026-10-10T10:00:00.003Z`)).toBe(0);
  // Nine digits, beyond what PostgreSQL keeps: still the exact instant, one nanosecond on.
  expect(await count(`created_since=${at}Z&created_until=${at}000001Z`)).toBe(2);
  // .003 to .019 remain: two at .003, one at each of .004 to .019.
  expect(await count(`created_since=${at}000001Z&created_until=2026-10-10T10:00:01Z`)).toBe(18);
  const stats = await get(
    `/v1/stats?created_since=${at}000001Z&created_until=2026-10-10T10:00:00.0030001Z`,
  ).expect(200);
  expect(stats.body).toMatchObject({
    created_since: '2026-10-10T10:00:00.003Z',
    created_until: '2026-10-10T10:00:00.004Z',
    total: 2,
  });
});

test('When a fraction rounds up into the next second, day or year, then that instant is meant', async () => {
  const res = await get(
    '/v1/stats?created_since=2026-12-31T23:59:59.9995Z&created_until=2027-01-01T00:00:01Z',
  ).expect(200);
  expect(res.body.created_since).toBe('2027-01-01T00:00:00.000Z');
});

test('When a bound is in the years 0001 to 0099, then it is that year (not 1901 to 1999)', async () => {
  const res = await get('/v1/stats?created_since=0050-06-01&created_until=2026-10-11').expect(200);
  expect(res.body).toMatchObject({ created_since: '0050-06-01T00:00:00.000Z', total: 24 });
  const list = await get('/v1/messages?created_since=0001-01-01T00:00:00Z&limit=500').expect(200);
  expect(list.body.data).toHaveLength(24);
});

test.each([
  ['year 0000', '0000-01-01'],
  ['an offset that carries year 0001 back into year 0000', '0001-01-01T10:00:00+14:00'],
  ['a leap second', '2016-12-31T23:59:60Z'],
  ['a day that does not exist', '2026-02-30'],
])('When a bound names %s, then the answer is a 400', async (_what, text) => {
  const params = new URLSearchParams({ created_since: text });
  await get(`/v1/messages?${params}`).expect(400);
  await get(`/v1/stats?${params}`).expect(400);
});
