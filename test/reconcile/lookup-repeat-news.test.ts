import { TEST_PROJECTS } from '../factories';
import { recordEvents } from '../../src/messages/record-events';
import { lookupEvent } from '../../src/reconcile/lookup-event';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { seedProxiedMessage } from '../relay/support';
import { lookedUpProxied, relayedPayloads } from './support';

/**
 * What a late callback after a lookup tells the app (src/messages/lookup-repeats.ts): a status
 * the app was last told at its rank by the lookup is not told again — also when SignalWire's
 * delayed callbacks come in their usual order (`sent`, then `delivered`) or after a `read` —
 * while another failure is news: two numeric codes (compatibility lookups and callbacks both
 * carry SignalWire's numbers) or two named ones that differ are two failures, the message shows
 * the new one, and the app hears it.
 */
jest.setTimeout(60_000);

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const PROJECT = 'b2c3d4e5-f6a7-8901-bcde-f12345678901';

const relayed = async (id: string) =>
  (await relayedPayloads(t.database.db, id)).map(({ status, code }) => `${status}:${code ?? ''}`);

const lookedUp = (api: 'cxml' | 'native', answer: Record<string, unknown>) =>
  lookedUpProxied(t.database.db, api, TEST_PROJECTS[api], answer);

const errorOf = async (id: string) =>
  (
    await t.database.db
      .selectFrom('messages')
      .select(['error_code'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow()
  ).error_code;

test('When a compatibility lookup relayed undelivered 30003 and SignalWire’s own callback says undelivered 30007, then the app is told the new failure the message now shows', async () => {
  const id = await lookedUp('cxml', { status: 'undelivered', error_code: 30003 });
  expect(await relayed(id)).toEqual(['undelivered:30003']);

  await postCxml(
    t.publicApp,
    cxmlFields({ MessageSid: id, MessageStatus: 'undelivered', ErrorCode: '30007' }),
  ).expect(200);

  // The message's error is now the callback's: an API reader sees 30007 (carrier filtering)…
  expect(await errorOf(id)).toBe('30007');
  // …and the app, which was told 30003 (handset unreachable), must hear it too.
  expect(await relayed(id)).toEqual(['undelivered:30003', 'undelivered:30007']);
});

test('When a native lookup relayed undelivered with a named code and the callback brings another named code, then the app is told it', async () => {
  const id = await lookedUp('native', {
    project_id: PROJECT,
    status: 'undelivered',
    error_code: 'unreachable_destination_handset',
  });
  await postNative(
    t.publicApp,
    nativeFields({
      id,
      project_id: PROJECT,
      status: 'undelivered',
      error_code: 'carrier_violation',
      // Stamped after the lookup: it stands for the status now (projection.ts).
      timestamp: new Date(Date.now() + 2_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    }),
  ).expect(200);
  expect(await errorOf(id)).toBe('carrier_violation');
  expect(await relayed(id)).toEqual([
    'undelivered:unreachable_destination_handset',
    'undelivered:carrier_violation',
  ]);
});

test('When a lookup relayed delivered and SignalWire’s delayed callbacks then come in their order, sent then delivered, then the app is told delivered once (README: not relayed again)', async () => {
  const id = await lookedUp('native', {
    project_id: PROJECT,
    status: 'delivered',
    error_code: null,
  });
  const ago = (ms: number) => new Date(Date.now() - ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  await postNative(
    t.publicApp,
    nativeFields({ id, project_id: PROJECT, status: 'sent', timestamp: ago(120_000) }),
  ).expect(200);
  await postNative(
    t.publicApp,
    nativeFields({ id, project_id: PROJECT, status: 'delivered', timestamp: ago(60_000) }),
  ).expect(200);
  const told = await relayed(id);
  expect(told.filter((s) => s.startsWith('delivered'))).toHaveLength(1);
});

test('When a lookup relayed delivered and the message was then read, then SignalWire’s own late delivered is not told again', async () => {
  const id = await lookedUp('native', {
    project_id: PROJECT,
    status: 'delivered',
    error_code: null,
  });
  const ago = (ms: number) => new Date(Date.now() - ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  await postNative(
    t.publicApp,
    nativeFields({ id, project_id: PROJECT, status: 'read', timestamp: ago(30_000) }),
  ).expect(200);
  await postNative(
    t.publicApp,
    nativeFields({ id, project_id: PROJECT, status: 'delivered', timestamp: ago(60_000) }),
  ).expect(200);
  expect(await relayed(id)).toEqual(['delivered:', 'read:']);
});

test('When a lookup relayed undelivered 30003 and SignalWire’s late callbacks say undelivered twice (its named code, then without one), then the app is not told undelivered again', async () => {
  const id = await seedProxiedMessage(t.database.db, 'native', 'http://127.0.0.1:9/app-status');
  const looked = lookupEvent(
    { id, api: 'native', projectId: PROJECT, status: 'queued', errorCode: null },
    { id, project_id: PROJECT, status: 'undelivered', error_code: '30003' },
    new Date(),
    false,
  );
  await recordEvents(t.database.db, [looked!]);
  expect(await relayed(id)).toEqual(['undelivered:30003']);

  // The first late callback repeats the lookup (a named code = the log's numeric one) and is
  // withheld — as intended.
  await postNative(
    t.publicApp,
    nativeFields({
      id,
      project_id: PROJECT,
      status: 'undelivered',
      error_code: 'unreachable_destination_handset',
      timestamp: '2026-12-06T10:00:01Z',
    }),
  ).expect(200);
  expect(await relayed(id)).toEqual(['undelivered:30003']);

  // A second one, with no error at all, tells the app nothing the lookup did not: the callback
  // held back is not what the app was told last (it was, and the app heard undelivered twice).
  await postNative(
    t.publicApp,
    nativeFields({
      id,
      project_id: PROJECT,
      status: 'undelivered',
      error_code: null,
      timestamp: '2026-12-06T10:00:02Z',
    }),
  ).expect(200);
  expect(await relayed(id)).toEqual(['undelivered:30003']);
});
