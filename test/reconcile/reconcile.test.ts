import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { createMessageLookup, lookupPath } from '../../src/reconcile/lookup-client';
import type { LookupTarget, MessageLookup } from '../../src/reconcile/lookup-client';
import { createReconcileWorker } from '../../src/reconcile/reconcile-worker';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { createRelay } from '../../src/relay/relay';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { E2E_PROJECT, E2E_TOKEN, startStack } from '../e2e/stack';
import type { Stack } from '../e2e/stack';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { eventually, startCustomerApp } from '../relay/support';
import type { CustomerApp } from '../relay/support';

/**
 * Reconciliation end to end over real sockets: messages sent through the proxy to the
 * simulator, callbacks to the receiver, then two sweep instances looking messages up at the
 * simulator (compatibility resource, native message log) and recording what they find.
 */

const SCHEDULE = [400, 800];
const OTHER_PROJECT = 'f0e1d2c3-b4a5-4697-8897-a6b5c4d3e2f1';

let stack: Stack;
let app: CustomerApp;
let relay: RelayWorker;
const sweeps: ReconcileWorker[] = [];

/** Every lookup, and how many each message had in flight at once (across both instances). */
const lookups: Array<{ id: string; path: string }> = [];
const inFlight = new Map<string, number>();
let maxInFlight = 0;

function countingLookup(inner: MessageLookup): MessageLookup {
  return {
    async lookup(target: LookupTarget) {
      lookups.push({ id: target.id, path: lookupPath(target) });
      const now = (inFlight.get(target.id) ?? 0) + 1;
      inFlight.set(target.id, now);
      maxInFlight = Math.max(maxInFlight, now);
      try {
        // Slow enough that a second instance would overlap if it could claim the same message.
        await new Promise((resolve) => setTimeout(resolve, 30));
        return await inner.lookup(target);
      } finally {
        inFlight.set(target.id, now - 1);
      }
    },
  };
}

const lookupsOf = (id: string) => lookups.filter((l) => l.id === id);

beforeAll(async () => {
  stack = await startStack({
    simulator: { stepDelayMs: 20, credentials: { projectId: E2E_PROJECT, token: E2E_TOKEN } },
    env: { RELAY_RETRY_SCHEDULE: '50ms' },
  });
  app = await startCustomerApp(SIMULATOR_SIGNING_KEY);
  const { db } = stack.app.database;
  relay = createRelay({
    config: stack.app.config,
    db,
    logger: stack.app.deps.logger,
    tuning: { pollMs: 20 },
  });
  relay.start();
  const credentials = new Map([
    [E2E_PROJECT, { projectIdAsWritten: E2E_PROJECT, token: E2E_TOKEN }],
    [OTHER_PROJECT, { projectIdAsWritten: OTHER_PROJECT, token: 'PT-not-this-projects-token' }],
  ]);
  for (let i = 0; i < 2; i++) {
    const sweep = createReconcileWorker({
      db,
      logger: stack.app.deps.logger,
      lookup: countingLookup(
        createMessageLookup({ baseUrl: stack.sim.url, credentials, timeoutMs: 15_000 }),
      ),
      schedule: SCHEDULE,
      rate: 100,
      projects: [...credentials.keys()],
      storeBody: false,
      recordOptions: { onRelaysEnqueued: relay.wake },
      pollMs: 50,
      statsEveryMs: 100,
    });
    sweeps.push(sweep);
  }
});

afterAll(async () => {
  for (const sweep of sweeps) await sweep.stop();
  await relay.stop();
  await app.close();
  await stack.close();
});

/** Sends, waits for the simulator's callbacks to land, then starts the sweeps. */
async function sendAll(
  sends: Array<{ api: 'cxml' | 'native'; to: string; mms?: boolean; callback?: string }>,
) {
  const ids = await Promise.all(
    sends.map((s) =>
      stack.send(s.api, s.to, { body: 'reconcile me', mms: s.mms, statusCallback: s.callback }),
    ),
  );
  await stack.sim.waitForIdle();
  return ids;
}

type Ids = Record<
  | 'lostCxml'
  | 'lostNative'
  | 'noReceiptCxml'
  | 'mms'
  | 'noReceiptNative'
  | 'unauthorized'
  | 'unknown',
  string
>;
let ids = {} as Ids;

beforeAll(async () => {
  const [lostCxml, lostNative, noReceiptCxml, mms, noReceiptNative] = await sendAll([
    { api: 'cxml', to: '+15557650008', callback: app.callbackUrl('/cxml-status') },
    { api: 'native', to: '+15558650008', callback: app.callbackUrl('/native-status') },
    { api: 'cxml', to: '+15557650007' },
    { api: 'cxml', to: '+15557651010', mms: true },
    { api: 'native', to: '+15558650007' },
  ]);
  ids = {
    lostCxml: lostCxml!,
    lostNative: lostNative!,
    noReceiptCxml: noReceiptCxml!,
    mms: mms!,
    noReceiptNative: noReceiptNative!,
    // Messages SignalWire will not show this service: another project's credentials are
    // wrong (401), and an id SignalWire never had (404).
    unauthorized: randomUUID(),
    unknown: randomUUID(),
  };
  // The carrier's undelivered receipt for the no-receipt compatibility message comes in
  // late and SignalWire's callback for it is lost: only the message resource says so.
  const simulated = stack.sim.messages.find((m) => m.id === ids.noReceiptCxml)!;
  Object.assign(simulated, {
    status: 'undelivered',
    errorCode: '30003',
    errorMessage: 'Unreachable',
  });

  await recordEvents(stack.app.database.db, [
    statusEvent('sent', { messageId: ids.unauthorized, projectId: OTHER_PROJECT }),
    statusEvent('sent', { messageId: ids.unknown, projectId: E2E_PROJECT }),
  ]);
  for (const sweep of sweeps) sweep.start();
});

async function messageWhen(
  id: string,
  check: (m: Awaited<ReturnType<Stack['message']>>) => boolean,
) {
  return eventually(async () => {
    const m = await stack.message(id);
    return m !== null && check(m) && m;
  }, 20_000);
}

test('When the last callback was lost (compatibility), then a lookup finds delivered, records it as reconcile and relays it to the app', async () => {
  const before = await stack.message(ids.lostCxml);
  // Sent by callback, not yet delivered. The callback, not necessarily last: with steps 20 ms
  // apart, SignalWire's callbacks can beat the proxy's record of the send on a loaded machine,
  // and the history is in arrival order (CI failed on `.at(-1)` so).
  expect(before?.status).toBe('sent');
  expect(before?.history).toContainEqual(
    expect.objectContaining({ status: 'sent', source: 'callback' }),
  );
  const m = await messageWhen(ids.lostCxml, (x) => x!.status === 'delivered');
  expect(m!.history!.at(-1)).toMatchObject({
    status: 'delivered',
    raw_status: 'delivered',
    source: 'reconcile',
  });
  expect(lookupsOf(ids.lostCxml)[0]!.path).toMatch(
    /\/api\/laml\/2010-04-01\/Accounts\/.+\/Messages\/.+\.json$/,
  );

  const relayed = await eventually(() => {
    const r = app.received.find((x) => x.messageId === ids.lostCxml && x.status === 'delivered');
    return r;
  });
  expect(relayed).toMatchObject({ valid: true, path: '/cxml-status' });
});

test('When the last callback was lost (native), then the message log says delivered and the app gets a signed JSON callback', async () => {
  const m = await messageWhen(ids.lostNative, (x) => x!.status === 'delivered');
  expect(m!.history!.at(-1)).toMatchObject({ source: 'reconcile' });
  expect(lookupsOf(ids.lostNative)[0]!.path).toBe(`/api/messaging/logs/${ids.lostNative}`);
  const relayed = await eventually(() =>
    app.received.find((x) => x.messageId === ids.lostNative && x.status === 'delivered'),
  );
  expect(relayed).toMatchObject({ valid: true, path: '/native-status' });
  // Earlier callbacks were relayed as they came (even one that beat the proxy's record of the
  // send: test/relay/callback-before-record.test.ts), the reconcile event last.
  const statuses = app.received.filter((x) => x.messageId === ids.lostNative).map((x) => x.status);
  expect(statuses).toEqual(['queued', 'initiated', 'sent', 'delivered']);
});

test('When SignalWire says undelivered with a code no callback brought, then the message is undelivered with that code', async () => {
  const m = await messageWhen(ids.noReceiptCxml, (x) => x!.status === 'undelivered');
  expect(m).toMatchObject({ error_code: '30003', stuck: false });
  expect(m!.history!.at(-1)).toMatchObject({ error_code: '30003', source: 'reconcile' });
});

test('When a message is still not final after the last step, then it is stuck, listed by stuck=true, and not looked up again', async () => {
  await messageWhen(ids.noReceiptNative, (x) => x!.stuck);
  const res = await request(stack.internalUrl)
    .get('/v1/messages')
    .query({ stuck: 'true' })
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  const listed = (res.body as { data: Array<{ id: string; stuck: boolean }> }).data;
  expect(listed.map((x) => x.id)).toContain(ids.noReceiptNative);
  expect(listed.every((x) => x.stuck)).toBe(true);
  const looked = lookupsOf(ids.noReceiptNative).length;
  expect(looked).toBe(SCHEDULE.length);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  expect(lookupsOf(ids.noReceiptNative)).toHaveLength(looked);
});

test('When SignalWire answers 401 or 404, then it is recorded on the message and not retried in a loop', async () => {
  const m = await messageWhen(ids.unknown, (x) => x!.stuck);
  // The query API shows the sweep's state next to `stuck`.
  expect(m).toMatchObject({ sweep_error: 'not_found', sweep_step: SCHEDULE.length });
  expect(Date.parse(m!.sweep_checked_at!)).not.toBeNaN();
  expect(lookupsOf(ids.unknown)).toHaveLength(SCHEDULE.length);

  // A 401 is the project's credentials, not the message: recorded, the project's lookups paused
  // (30 s at first), no step used up (test/reconcile/refused-credentials.test.ts).
  const refused = await messageWhen(ids.unauthorized, (x) => x!.sweep_error === 'unauthorized');
  expect(refused).toMatchObject({ sweep_step: 0, stuck: false });
  expect(lookupsOf(ids.unauthorized)).toHaveLength(1);
});

test('When the message is an MMS at sent, then it is final and never looked up', async () => {
  await messageWhen(ids.noReceiptNative, (x) => x!.stuck);
  const m = await stack.message(ids.mms);
  expect(m).toMatchObject({ kind: 'mms', status: 'sent', stuck: false });
  expect(lookupsOf(ids.mms)).toHaveLength(0);
});

test('When two instances sweep the same database, then no message is ever looked up by both at once', () => {
  expect(lookups.length).toBeGreaterThan(0);
  expect(maxInFlight).toBe(1);
  for (const id of Object.values(ids)) {
    expect(lookupsOf(id).length).toBeLessThanOrEqual(SCHEDULE.length);
  }
});
