import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { createMessageLookup } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { createRelay } from '../../src/relay/relay';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { E2E_PROJECT, E2E_TOKEN, deliverComposedEarlier, startStack } from '../e2e/stack';
import type { Stack } from '../e2e/stack';
import { eventually, startCustomerApp } from '../relay/support';
import { startTestSweep } from './support';
import type { CustomerApp } from '../relay/support';

/**
 * When SignalWire's callback is lost, the sweep's lookup records the status and relays "the
 * same callback SignalWire failed to send" to the app (lookup-event.ts, DESIGN §10, §11): with
 * what every native callback carries, the send's custom_variables, by which apps match
 * callbacks to their records — and once, even when SignalWire's own callback comes after all.
 */

jest.setTimeout(60_000);

let stack: Stack;
let app: CustomerApp;
let relay: RelayWorker;
let sweep: ReconcileWorker;

beforeAll(async () => {
  stack = await startStack({
    simulator: { stepDelayMs: 20, credentials: { projectId: E2E_PROJECT, token: E2E_TOKEN } },
    env: { RELAY_RETRY_SCHEDULE: '50ms' },
  });
  app = await startCustomerApp(SIMULATOR_SIGNING_KEY);
  const { db } = stack.app.database;
  const { logger } = stack.app.deps;
  relay = createRelay({ config: stack.app.config, db, logger, tuning: { pollMs: 20 } });
  relay.start();
  // Lookups after 400 ms: the simulator's callbacks (20 ms apart) are all in by then.
  sweep = startTestSweep({
    db,
    lookup: createMessageLookup({
      baseUrl: stack.sim.url,
      credentials: new Map([[E2E_PROJECT, E2E_TOKEN]]),
      timeoutMs: 2_000,
    }),
    projects: [E2E_PROJECT],
    schedule: [400, 800],
    recordOptions: { onRelaysEnqueued: relay.wake },
  });
});

afterAll(async () => {
  await sweep.stop();
  await relay.stop();
  await app.close();
  await stack.close();
});

/** A native send whose `delivered` callback the simulator never sends (To ending 0008). */
async function lostDelivery(body: string): Promise<string> {
  const id = await stack.send('native', '+15558650008', {
    body,
    statusCallback: app.callbackUrl('/native-status'),
    customVariables: { order_id: 'A-1234' },
  });
  await stack.sim.waitForIdle();
  return id;
}

const relayedTo = (id: string, status: string) =>
  app.received.filter((r) => r.messageId === id && r.status === status);

test('When the last native callback was lost, then the reconciled relay carries the send’s custom_variables like every callback before it', async () => {
  const id = await lostDelivery('order shipped');
  await eventually(() => relayedTo(id, 'delivered').length > 0, 20_000);

  const earlier = app.received.filter((r) => r.messageId === id && r.status !== 'delivered');
  expect(earlier.length).toBeGreaterThan(0);
  for (const r of earlier) {
    expect(JSON.parse(r.body)).toMatchObject({ custom_variables: { order_id: 'A-1234' } });
  }
  const [delivered] = relayedTo(id, 'delivered');
  expect(delivered!.valid).toBe(true);
  expect(JSON.parse(delivered!.body)).toMatchObject({
    id,
    status: 'delivered',
    custom_variables: { order_id: 'A-1234' },
  });
});

test('When SignalWire’s own delivered callback comes after the lookup recorded and relayed delivered, then it is kept in the history and the app is not told delivered again', async () => {
  const id = await lostDelivery('late callback');
  await eventually(() => relayedTo(id, 'delivered').length > 0, 20_000);

  const jobs = async (): Promise<number> =>
    Number(
      (
        await stack.app.database.db
          .selectFrom('relay_jobs')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where('message_id', '=', id)
          .executeTakeFirstOrThrow()
      ).n,
    );
  const before = await jobs();

  // SignalWire's own delivered callback, composed when the receipt came, delivered late.
  const late = await deliverComposedEarlier(stack.sim.messages.find((m) => m.id === id)!);
  expect(late.status).toBeLessThan(300);

  // Stored (its provider timestamp makes it another event than the lookup's, DESIGN §3), in
  // the same transaction as any relay job it would have: none was written.
  const m = await stack.message(id);
  expect(await jobs()).toBe(before);
  expect(m!.history!.filter((h) => h.status === 'delivered').map((h) => h.source)).toEqual([
    'reconcile',
    'callback',
  ]);
  expect(relayedTo(id, 'delivered')).toHaveLength(1);
});
