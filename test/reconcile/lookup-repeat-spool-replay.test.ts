import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { nativeFields, postNative } from '../helpers/callbacks';
import { eventually } from '../relay/support';
import { switchedSpool } from '../ingest/support/switched-spool';
import type { SwitchedSpool } from '../ingest/support/switched-spool';
import { lookedUpProxied, relayedPayloads } from './support';

/**
 * README "Reconciliation": should SignalWire's own callback for a status a lookup relayed come
 * after all, it is kept in the history but not relayed again. In an outage, a replica cut off
 * from PostgreSQL spools SignalWire's late callbacks (`sent`, `delivered`) while another
 * replica's sweep looks the message up and relays `delivered`; the replay then records them in
 * one batch, the `sent` first — which hid that the `delivered` repeats the lookup's, and the app
 * was told `delivered` twice (two-replica outage review; record-events.ts, toldInBatch).
 */
jest.setTimeout(60_000);

const PROJECT = 'b2c3d4e5-f6a7-8901-bcde-f12345678901';
let dir: string;
let h: SwitchedSpool;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-lookup-repeat-replay-'));
  h = await switchedSpool(dir);
  h.recorder.start();
});
afterAll(async () => {
  await h?.tcp.restore();
  await h?.close();
  await rm(dir, { recursive: true, force: true });
});

const relayed = async (id: string) =>
  (await relayedPayloads(h.t.database.db, id)).map(({ status }) => status);

const lookedUpDelivered = () =>
  lookedUpProxied(h.t.database.db, 'native', PROJECT, {
    project_id: PROJECT,
    status: 'delivered',
    error_code: null,
  });

const callback = (id: string, status: string, second: number) =>
  nativeFields({ id, project_id: PROJECT, status, timestamp: `2026-12-06T10:00:0${second}Z` });

test('When the spooled callbacks sent and delivered are replayed after a lookup relayed delivered, then the app is not told delivered again', async () => {
  const id = await lookedUpDelivered();
  await h.tcp.cut();
  await postNative(h.t.publicApp, callback(id, 'sent', 1)).expect(200);
  await postNative(h.t.publicApp, callback(id, 'delivered', 2)).expect(200);
  expect(h.spool.depth()).toBe(2);
  await h.tcp.restore();
  await eventually(() => h.spool.depth() === 0, 15_000);
  const history = await h.t.database.db
    .selectFrom('status_events')
    .select(['source', 'status'])
    .where('message_id', '=', id)
    .orderBy('seq')
    .execute();
  expect(history.map((e) => `${e.source}:${e.status}`)).toEqual([
    'proxy:queued',
    'reconcile:delivered',
    'replay:sent',
    'replay:delivered',
  ]);
  // README: kept in the history, not relayed again. The late `sent` is relayed (every stored
  // event is); the repeat of the lookup's `delivered` is not.
  expect(await relayed(id)).toEqual(['delivered', 'sent']);
});
