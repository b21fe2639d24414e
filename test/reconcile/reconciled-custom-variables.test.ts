import { randomUUID } from 'node:crypto';
import { recordEvents } from '../../src/messages/record-events';
import { MAX_KEPT_CUSTOM_VARIABLES_BYTES } from '../../src/proxy/send-event';
import { echoedCustomVariables } from '../../src/reconcile/reconcile.repository';
import type { Stack } from '../e2e/stack';
import { statusEvent } from '../factories';
import { eventually } from '../relay/support';
import type { CustomerApp } from '../relay/support';
import { startReconcilingStack } from './reconciling-stack';
import type { ReconcilingStack } from './reconciling-stack';

/**
 * Every native callback SignalWire sends echoes the send's custom_variables (SIGNALWIRE.md),
 * and apps match callbacks to their records by them. When every callback of a send is lost
 * (the receiver was down for all SignalWire's attempts), the sweep's lookup stands in for them
 * and relays "the callback SignalWire failed to send": the message log does not hold them, so
 * the proxy's record of the send keeps them (proxy/send-event.ts) for that relay.
 */

jest.setTimeout(60_000);

let running: ReconcilingStack;
let stack: Stack;
let app: CustomerApp;

beforeAll(async () => {
  running = await startReconcilingStack({
    maxAttempts: 1,
    // The receiver's store is "down" for callbacks (503): SignalWire drops them. The proxy's
    // record of the send is still written.
    loses: (event) => event.source !== 'proxy',
  });
  ({ stack, app } = running);
});

afterAll(() => running.close());

const relayedDelivered = (id: string) =>
  eventually(
    () => app.received.find((r) => r.messageId === id && r.status === 'delivered'),
    20_000,
  );

/** The raw payload of the proxy's record of the send. */
async function proxyRecord(id: string): Promise<Record<string, unknown>> {
  const row = await stack.app.database.db
    .selectFrom('status_events')
    .select('raw')
    .where('message_id', '=', id)
    .where('source', '=', 'proxy')
    .executeTakeFirstOrThrow();
  return row.raw as Record<string, unknown>;
}

test('When every native callback of a send was lost, then the reconciled relay still carries the send’s custom_variables, as SignalWire’s callback would', async () => {
  const id = await stack.send('native', '+15558650001', {
    body: 'order shipped',
    statusCallback: app.callbackUrl('/native-status'),
    customVariables: { order_id: 'A-1234' },
  });
  await stack.sim.waitForIdle();
  // What SignalWire tried to send carried them.
  const tried = stack.sim.deliveries.filter((d) => JSON.stringify(d).includes(id));
  expect(JSON.stringify(tried)).toContain('A-1234');

  const relayed = await relayedDelivered(id);
  expect(relayed.valid).toBe(true);
  expect(JSON.parse(relayed.body)).toMatchObject({
    id,
    status: 'delivered',
    custom_variables: { order_id: 'A-1234' },
  });
  // Kept with STORE_BODY off, which governs message texts only.
  const raw = await proxyRecord(id);
  expect(raw['custom_variables']).toEqual({ order_id: 'A-1234' });
  expect(raw).not.toHaveProperty('body');
});

test('When every native callback of a send that set no custom_variables was lost, then the reconciled relay carries an empty custom_variables, as every native callback does', async () => {
  const id = await stack.send('native', '+15558650031', {
    body: 'no variables',
    statusCallback: app.callbackUrl('/native-status'),
  });
  await stack.sim.waitForIdle();
  // What SignalWire tried to send carried the field, empty.
  const tried = stack.sim.deliveries.filter((d) => d.messageId === id);
  expect(tried.length).toBeGreaterThan(0);
  for (const d of tried) expect(JSON.parse(d.rawBody)).toHaveProperty('custom_variables', {});

  const relayed = await relayedDelivered(id);
  expect(relayed.valid).toBe(true);
  const payload = JSON.parse(relayed.body) as Record<string, unknown>;
  expect(payload).toMatchObject({ id, status: 'delivered' });
  expect(payload['custom_variables']).toEqual({});
});

test('When every callback of a compatibility send was lost, then the reconciled relay is SignalWire’s form callback, with no custom_variables', async () => {
  const id = await stack.send('cxml', '+15558650021', {
    body: 'compat order shipped',
    statusCallback: app.callbackUrl('/cxml-status'),
  });
  await stack.sim.waitForIdle();

  const relayed = await relayedDelivered(id);
  expect(relayed.valid).toBe(true);
  const params = new URLSearchParams(relayed.body);
  expect(params.get('MessageSid')).toBe(id);
  expect(params.get('MessageStatus')).toBe('delivered');
  expect([...params.keys()].filter((name) => /custom/i.test(name))).toEqual([]);
  expect(await proxyRecord(id)).not.toHaveProperty('custom_variables');
});

test('When a send’s custom_variables are too big to keep, then the send is still answered and recorded, and the reconciled relay goes without them', async () => {
  // 20 pairs (the most the rules take) with long keys: past the bound, within the 256 KiB body.
  const customVariables: Record<string, string> = {};
  for (let i = 0; i < 20; i++) customVariables[`k${i}_${'x'.repeat(2_000)}`] = 'v'.repeat(1_000);
  expect(JSON.stringify(customVariables).length).toBeGreaterThan(MAX_KEPT_CUSTOM_VARIABLES_BYTES);

  const id = await stack.send('native', '+15558650011', {
    body: 'big variables',
    statusCallback: app.callbackUrl('/native-status'),
    customVariables,
  });
  await stack.sim.waitForIdle();
  expect((await stack.message(id))!.history!.map((h) => h.source)).toContain('proxy');
  expect(await proxyRecord(id)).not.toHaveProperty('custom_variables');

  const relayed = await relayedDelivered(id);
  expect(JSON.parse(relayed.body)).toMatchObject({ id, status: 'delivered' });
  expect(JSON.parse(relayed.body)).not.toHaveProperty('custom_variables');
});

describe('the custom_variables a lookup’s relay carries', () => {
  /** A native event of `id` whose payload carries custom_variables `{ order_id }`. */
  const carrying = (id: string, source: 'proxy' | 'callback', orderId: string) =>
    statusEvent(source === 'proxy' ? 'queued' : 'sent', {
      messageId: id,
      api: 'native',
      source,
      raw: { id, custom_variables: { order_id: orderId } },
    });

  test.each([
    ['after the proxy recorded the send’s', ['proxy', 'callback'] as const],
    ['before the proxy’s record of the send was written', ['callback', 'proxy'] as const],
  ])(
    'When a native callback echoed custom_variables %s, then the echoed ones win',
    async (_, order) => {
      const { db } = stack.app.database;
      const id = randomUUID();
      for (const source of order) {
        await recordEvents(db, [
          carrying(id, source, source === 'proxy' ? 'as-sent' : 'as-echoed'),
        ]);
      }
      expect(await echoedCustomVariables(db, id)).toEqual({ order_id: 'as-echoed' });
    },
  );
});
