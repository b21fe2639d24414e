import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import type * as Tables from '../../src/messages/error-reason-tables';
import type * as TestAppModule from '../helpers/test-app';

/**
 * An answer's `error_reason` comes from the release's tables (error-reason-tables.ts), not
 * from the rows. An upgrade that adds a reason changes the answer for the same rows, so the
 * ETag must change with it: a dashboard revalidating what the release before answered would
 * otherwise get a 304 and keep showing `error_reason: null` until the message changes again.
 */

const CODE = '39999';
const NEW_REASON = 'A reason only the next release knows';

let before: TestApp;
let upgraded: TestApp;
let id: string;

beforeAll(async () => {
  before = await createTestApp();
  // The next release, on the same database: its tables know CODE.
  let createUpgraded!: typeof createTestApp;
  jest.isolateModules(() => {
    jest.doMock('../../src/messages/error-reason-tables', () => {
      const tables = jest.requireActual<typeof Tables>('../../src/messages/error-reason-tables');
      return { ...tables, COMPATIBILITY: { ...tables.COMPATIBILITY, [CODE]: NEW_REASON } };
    });
    ({ createTestApp: createUpgraded } =
      jest.requireActual<typeof TestAppModule>('../helpers/test-app'));
  });
  upgraded = await createUpgraded({}, { database: before.database });
  const event = statusEvent('undelivered', { to: '+15557403101', errorCode: CODE });
  id = event.messageId;
  await recordEvents(before.database.db, [event]);
});

afterAll(async () => {
  await upgraded?.close();
  await before?.close();
});

const auth = { Authorization: `Bearer ${TEST_API_TOKEN}` };
type Reason = { error_reason: string | null };

test.each([
  ['/v1/messages/:id', () => `/v1/messages/${id}`, (body: Reason) => body],
  [
    '/v1/messages',
    () => '/v1/messages?to=%2B15557403101',
    (body: { data: Reason[] }) => body.data[0],
  ],
  [
    '/v1/events',
    // A long-poll: the feed reads below the cluster's oldest open transaction, which another
    // test file's may hold back for a moment. A full page (the database holds this one event):
    // its cursor is the event's, not the cluster's horizon, which other files' transactions
    // move between two reads — the page's ETag would change with it.
    () => '/v1/events?limit=1&wait=20',
    (body: { data: Reason[] }) => body.data.at(-1),
  ],
])(
  'When a release that knows a new error reason answers %s revalidated with the release before’s ETag, then it answers 200 with the reason, not 304',
  async (_route, path, shown) => {
    const old = await request(before.internalApp).get(path()).set(auth).expect(200);
    expect(shown(old.body)).toMatchObject({ error_reason: null });

    const after = await request(upgraded.internalApp)
      .get(path())
      .set(auth)
      .set('If-None-Match', old.headers.etag!);
    expect(after.status).toBe(200);
    expect(shown(after.body)).toMatchObject({ error_reason: NEW_REASON });
    expect(after.headers.etag).not.toBe(old.headers.etag);

    // The same release still revalidates its own answer.
    await request(upgraded.internalApp)
      .get(path())
      .set(auth)
      .set('If-None-Match', after.headers.etag!)
      .expect(304);
  },
);
