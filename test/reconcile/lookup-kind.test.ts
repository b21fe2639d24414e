import { randomUUID } from 'node:crypto';
import { createLogger } from '../../src/logger';
import { createReconcileWorker } from '../../src/reconcile/reconcile-worker';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { nativeFields, postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually } from '../relay/support';

/**
 * A native MMS known only from its callbacks (sent by SWML's send_sms or the Relay SDK with its
 * callback at sw-status): they carry neither media nor kind, so the message's kind is unknown,
 * and an MMS never gets past `sent` (it has no receipts). The sweep looked it up at every step
 * and marked it stuck, though SignalWire's log answer says `kind: "mms"`. Now the answer's kind
 * is kept, and an MMS at `sent` is final: neither stuck nor swept again.
 */

const PROJECT = 'b2c3d4e5-f6a7-8901-bcde-f12345678901';
let t: TestApp;
let sweep: ReconcileWorker | undefined;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await sweep?.stop();
  await t.close();
});

const old = (seconds: number) =>
  new Date(Date.now() - 120_000 + seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

async function sentFromCallbacks(): Promise<string> {
  const id = randomUUID();
  for (const [status, at] of [
    ['queued', 0],
    ['sent', 2],
  ] as const) {
    await postNative(
      t.publicApp,
      nativeFields({ id, project_id: PROJECT, status, timestamp: old(at) }),
    ).expect(200);
  }
  return id;
}

test('When the lookup says a native message at sent is an MMS, then it keeps that kind and is final, not stuck', async () => {
  const mms = await sentFromCallbacks();
  const sms = await sentFromCallbacks();
  const looked: string[] = [];
  sweep = createReconcileWorker({
    db: t.database.db,
    logger: createLogger('silent'),
    lookup: {
      lookup: async (target) => {
        looked.push(target.id);
        // SignalWire's message log (MessageLog): status and kind.
        const kind = target.id === mms ? 'mms' : 'sms';
        return { kind: 'found', answer: { id: target.id, status: 'sent', kind } };
      },
    },
    schedule: [0, 50],
    rate: 100,
    projects: [PROJECT],
    storeBody: false,
    pollMs: 20,
  });
  sweep.start();
  const row = (id: string) =>
    t.database.db
      .selectFrom('messages')
      .select(['kind', 'status', 'stuck', 'sweep_step'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
  // The SMS goes through the whole schedule and is stuck at sent, as before.
  expect(
    await eventually(async () => {
      const m = await row(sms);
      if (!m.stuck) throw new Error('not yet');
      return m;
    }),
  ).toMatchObject({ kind: 'sms', status: 'sent', stuck: true });
  // The MMS was looked up once: its kind known, it is final at sent.
  expect(await row(mms)).toMatchObject({ kind: 'mms', status: 'sent', stuck: false });
  expect(looked.filter((id) => id === mms)).toHaveLength(1);
});
