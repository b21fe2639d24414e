import { recordEvents } from '../../src/messages/record-events';
import { lookupEvent } from '../../src/reconcile/lookup-event';
import { nativeFields, postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { seedProxiedMessage } from '../relay/support';

/**
 * A native callback saying what a lookup recorded and relayed is not relayed again
 * (src/messages/lookup-repeats.ts) — only while that lookup is what the app was told last.
 * When another outcome was relayed in between, the repeat is what brings the app back to the
 * message's status, and it is relayed.
 */
jest.setTimeout(60_000);

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const relayed = async (id: string) =>
  (
    await t.database.db
      .selectFrom('relay_jobs')
      .select(['id', 'payload'])
      .where('message_id', '=', id)
      .orderBy('id')
      .execute()
  ).map((job) => JSON.parse(Buffer.from(job.payload!).toString('utf8')).status as string);

test('When SignalWire’s own callback repeats what the lookup relayed last, then it is stored and not relayed; its error code spelled the same is the same', async () => {
  const id = await seedProxiedMessage(t.database.db, 'native', 'http://127.0.0.1:9/app-status');
  const project = 'b2c3d4e5-f6a7-8901-bcde-f12345678901';
  const lookedUpAt = new Date();
  const looked = lookupEvent(
    { id, api: 'native', projectId: project, status: 'queued', errorCode: null },
    { id, project_id: project, status: 'undelivered', error_code: '30003' },
    lookedUpAt,
    false,
  );
  await recordEvents(t.database.db, [looked!]);
  await postNative(
    t.publicApp,
    nativeFields({
      id,
      project_id: project,
      status: 'undelivered',
      error_code: '30003',
      timestamp: lookedUpAt.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    }),
  ).expect(200);

  const history = await t.database.db
    .selectFrom('status_events')
    .select(['source'])
    .where('message_id', '=', id)
    .orderBy('seq')
    .execute();
  expect(history.map((h) => h.source)).toEqual(['proxy', 'reconcile', 'callback']);
  expect(await relayed(id)).toEqual(['undelivered']);
});

test('When a lookup relayed delivered, then a late undelivered was relayed, then SignalWire’s own delivered comes, then the app is told delivered last, as the message says', async () => {
  const id = await seedProxiedMessage(t.database.db, 'native', 'http://127.0.0.1:9/app-status');
  const project = 'b2c3d4e5-f6a7-8901-bcde-f12345678901';
  const lookedUpAt = new Date();

  // The sweep's lookup: SignalWire's log says delivered (recorded and relayed).
  const looked = lookupEvent(
    { id, api: 'native', projectId: project, status: 'queued', errorCode: null },
    { id, project_id: project, status: 'delivered', error_code: null },
    lookedUpAt,
    false,
  );
  await recordEvents(t.database.db, [looked!]);

  // SignalWire's late callbacks: undelivered (stamped a minute before the lookup), then
  // delivered (stamped after it). Both are new events, stored in the history.
  const at = (ms: number) =>
    new Date(lookedUpAt.getTime() + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  await postNative(
    t.publicApp,
    nativeFields({ id, project_id: project, status: 'undelivered', timestamp: at(-60_000) }),
  ).expect(200);
  await postNative(
    t.publicApp,
    nativeFields({ id, project_id: project, status: 'delivered', timestamp: at(-30_000) }),
  ).expect(200);

  const message = await t.database.db
    .selectFrom('messages')
    .select(['status'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
  const history = await t.database.db
    .selectFrom('status_events')
    .select(['raw_status', 'source'])
    .where('message_id', '=', id)
    .orderBy('seq')
    .execute();
  expect(message.status).toBe('delivered');
  expect(history.map((h) => `${h.source}:${h.raw_status}`)).toEqual([
    'proxy:queued',
    'reconcile:delivered',
    'callback:undelivered',
    'callback:delivered',
  ]);

  // The app's last word must be the message's status.
  const statuses = await relayed(id);
  expect(statuses[statuses.length - 1]).toBe('delivered');
});
