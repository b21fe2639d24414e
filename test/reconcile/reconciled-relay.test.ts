import { deliverComposedEarlier } from '../e2e/stack';
import type { Stack } from '../e2e/stack';
import { eventually } from '../relay/support';
import type { CustomerApp } from '../relay/support';
import { startReconcilingStack } from './reconciling-stack';
import type { ReconcilingStack } from './reconciling-stack';

/**
 * When SignalWire's callback is lost, the sweep's lookup records the status and relays "the
 * same callback SignalWire failed to send" to the app (lookup-event.ts, DESIGN §10, §11): with
 * what every native callback carries, the send's custom_variables, by which apps match
 * callbacks to their records — and once, even when SignalWire's own callback comes after all.
 */

jest.setTimeout(60_000);

let running: ReconcilingStack;
let stack: Stack;
let app: CustomerApp;

beforeAll(async () => {
  running = await startReconcilingStack();
  ({ stack, app } = running);
});

afterAll(() => running.close());

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
