import fc from 'fast-check';
import { sql } from 'kysely';
import type { Db } from '../../src/db/database';
import { listMessages } from '../../src/messages/messages.repository';
import type { ListCursor, ListOrder, MessageFilter } from '../../src/messages/messages.repository';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

jest.setTimeout(120_000);

/**
 * listMessages sends a multi-value filter as one page per value merged (a UNION ALL) and adds
 * the time bounds a window implies: for any filters, any order and any page size it must return
 * exactly what the plain single query returns, page after page through the cursors — on a
 * store with few values per column and many equal timestamps, so the branches and the id
 * tie-break both matter.
 */

const STATUSES = ['queued', 'sent', 'delivered', 'undelivered', 'failed'] as const;
const NUMBERS = ['+15550000001', '+15550000002', '+15550000003'] as const;
const APIS = ['cxml', 'native'] as const;
const CODES = ['30003', '30005', '30007'] as const;
const BASE = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

/** The page as listMessages read it before the UNION ALL: every filter in one statement. */
function singleQuery(
  db: Db,
  filter: MessageFilter,
  limit: number,
  order: ListOrder,
  after: ListCursor | undefined,
) {
  const key = order === 'created' ? 'created_at' : 'last_event_at';
  let query = db.selectFrom('messages').select(['id', 'created_at', 'last_event_at']);
  if (filter.statuses?.length) query = query.where('status', 'in', filter.statuses);
  if (filter.to?.length) query = query.where('to', 'in', filter.to);
  if (filter.from?.length) query = query.where('from', 'in', filter.from);
  if (filter.apis?.length) query = query.where('api', 'in', filter.apis);
  if (filter.errorCodes?.length) query = query.where('error_code', 'in', filter.errorCodes);
  if (filter.since) query = query.where('last_event_at', '>=', filter.since);
  if (filter.until) query = query.where('last_event_at', '<', filter.until);
  if (filter.createdSince) query = query.where('created_at', '>=', filter.createdSince);
  if (filter.createdUntil) query = query.where('created_at', '<', filter.createdUntil);
  if (filter.stuck !== undefined) query = query.where('stuck', '=', filter.stuck);
  if (after) {
    query = query.where((eb) => eb(eb.refTuple(key, 'id'), '<', eb.tuple(after.at, after.id)));
  }
  return query.orderBy(key, 'desc').orderBy('id', 'desc').limit(limit).execute();
}

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
  // 400 messages over 10 hours, times on whole minutes (many equal), last activity at or after
  // first sighting, as the fold writes them (src/messages/projection.ts).
  const rows = fc.sample(
    fc.record({
      status: fc.constantFrom(...STATUSES),
      to: fc.constantFrom(...NUMBERS),
      from: fc.constantFrom(...NUMBERS),
      api: fc.constantFrom(...APIS),
      errorCode: fc.option(fc.constantFrom(...CODES)),
      created: fc.integer({ min: 0, max: 600 }),
      lasting: fc.integer({ min: 0, max: 120 }),
      stuck: fc.boolean(),
    }),
    { numRuns: 400, seed: 1 },
  );
  await t.deps.db
    .insertInto('messages')
    .values(
      rows.map((row, i) => ({
        id: `m${String(i).padStart(4, '0')}`,
        api: row.api,
        from: row.from,
        to: row.to,
        status: row.status,
        raw_status: row.status,
        status_rank: 10,
        status_received_at: new Date(BASE + (row.created + row.lasting) * MINUTE),
        error_code: row.errorCode,
        created_at: new Date(BASE + row.created * MINUTE),
        last_event_at: new Date(BASE + (row.created + row.lasting) * MINUTE),
        stuck: row.stuck,
        conflict: false,
        sent_via_proxy: false,
        updated_at: new Date(BASE),
      })),
    )
    .execute();
  await sql`ANALYZE messages`.execute(t.deps.db);
});
afterAll(async () => {
  await t?.close();
});

// Each filter in about a third of the cases: all of them at once would match nothing.
const sometimes = <T>(value: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: value });
// A value may repeat (status=failed,failed): the page must not.
const subset = <T>(values: readonly T[]) =>
  sometimes(fc.array(fc.constantFrom(...values), { minLength: 1, maxLength: values.length + 1 }));
const instant = sometimes(
  fc.integer({ min: -10, max: 730 }).map((minute) => new Date(BASE + minute * MINUTE)),
);

test('When any filters, order and page size are walked through their cursors, then every page is the single query’s page', async () => {
  let rowsCompared = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        statuses: subset(STATUSES),
        to: subset(NUMBERS),
        from: subset(NUMBERS),
        apis: subset(APIS),
        errorCodes: subset(CODES),
        since: instant,
        until: instant,
        createdSince: instant,
        createdUntil: instant,
        stuck: sometimes(fc.boolean()),
      }),
      fc.constantFrom<ListOrder>('activity', 'created'),
      fc.integer({ min: 1, max: 40 }),
      async (filter, order, limit) => {
        let after: ListCursor | undefined;
        for (let pages = 0; pages < 500; pages += 1) {
          const expected = await singleQuery(t.deps.db, filter, limit, order, after);
          const page = await listMessages(t.deps.db, filter, limit, { order, after });
          expect(page.map((row) => row.id)).toEqual(expected.map((row) => row.id));
          rowsCompared += page.length;
          const last = page[page.length - 1];
          if (page.length < limit || !last) return;
          after = { at: order === 'created' ? last.created_at : last.last_event_at, id: last.id };
        }
        throw new Error('the walk did not end');
      },
    ),
    { numRuns: 150, seed: 20261206 },
  );
  // The walks were not all empty.
  expect(rowsCompared).toBeGreaterThan(5000);
});
