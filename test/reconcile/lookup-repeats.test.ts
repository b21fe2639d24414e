import { TEST_PROJECTS } from '../factories';
import { recordEvents } from '../../src/messages/record-events';
import { lookupEvent } from '../../src/reconcile/lookup-event';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { seedProxiedMessage } from '../relay/support';
import { lookedUpProxied, relayedPayloads } from './support';

/**
 * A native callback saying what a lookup recorded and relayed is not relayed again
 * (src/messages/lookup-repeats.ts) — only while that lookup is what the app was told last.
 * When another outcome was relayed in between, the repeat is what brings the app back to the
 * message's status, and it is relayed. A repeat is the same status however spelled: REST's
 * `initiated` is a compatibility callback's `sending`, and a message log's numeric code is a
 * native callback's spelled-out one (SIGNALWIRE.md); a code the lookup lacked is news.
 */
jest.setTimeout(60_000);

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const relayed = async (id: string) =>
  (await relayedPayloads(t.database.db, id)).map(({ status }) => status);

test('When SignalWire’s own callback repeats what the lookup relayed last, then it is stored and not relayed; its error code spelled the same is the same', async () => {
  const id = await seedProxiedMessage(t.database.db, 'native', 'http://127.0.0.1:9/app-status');
  const project = PROJECT;
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
  const project = PROJECT;
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

const PROJECT = 'b2c3d4e5-f6a7-8901-bcde-f12345678901';

const lookedUp = (api: 'cxml' | 'native', answer: Record<string, unknown>) =>
  lookedUpProxied(t.database.db, api, TEST_PROJECTS[api], answer);

const sources = async (id: string) =>
  (
    await t.database.db
      .selectFrom('status_events')
      .select(['source', 'raw_status', 'error_code'])
      .where('message_id', '=', id)
      .orderBy('seq')
      .execute()
  ).map((e) => `${e.source}:${e.raw_status}:${e.error_code ?? ''}`);

test('When a lookup read a compatibility message `initiated` and SignalWire’s own `sending` callback comes late, then it is stored and the app is told sending once', async () => {
  const id = await lookedUp('cxml', { status: 'initiated', error_code: null });
  expect(await relayed(id)).toEqual(['sending']);

  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sending' })).expect(200);

  expect(await sources(id)).toEqual(['proxy:queued:', 'reconcile:initiated:', 'callback:sending:']);
  expect(await relayed(id)).toEqual(['sending']);
});

test('When a lookup read a native failure’s numeric code and SignalWire’s own callback spells it out, then the app is told undelivered once', async () => {
  const id = await lookedUp('native', {
    project_id: PROJECT,
    status: 'undelivered',
    error_code: '30003',
  });
  await postNative(
    t.publicApp,
    nativeFields({
      id,
      project_id: PROJECT,
      status: 'undelivered',
      error_code: 'unreachable_destination_handset',
      error_message: 'Unreachable destination handset',
    }),
  ).expect(200);

  expect(await sources(id)).toEqual([
    'proxy:queued:',
    'reconcile:undelivered:30003',
    'callback:undelivered:unreachable_destination_handset',
  ]);
  expect(await relayed(id)).toEqual(['undelivered']);
});

test('When a lookup read a failure without its code and SignalWire’s own callback brings it, then that is news and relayed', async () => {
  const id = await lookedUp('native', {
    project_id: PROJECT,
    status: 'undelivered',
    error_code: null,
  });
  await postNative(
    t.publicApp,
    nativeFields({
      id,
      project_id: PROJECT,
      status: 'undelivered',
      error_code: 'unreachable_destination_handset',
    }),
  ).expect(200);

  expect(await relayed(id)).toEqual(['undelivered', 'undelivered']);
  const message = await t.database.db
    .selectFrom('messages')
    .select(['error_code'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
  expect(message.error_code).toBe('unreachable_destination_handset');
});

test('When a compatibility callback of the status the proxy’s send stands on comes, then it is relayed (no lookup told the app anything)', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', 'http://127.0.0.1:9/app-status');
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'queued' })).expect(200);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  expect(await relayed(id)).toEqual(['queued', 'sent']);
});
