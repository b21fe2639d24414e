import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { sdkClient, startUpstreamTap } from '../proxy/support';
import type { UpstreamTap } from '../proxy/support';
import { eventually, startCustomerApp, startRelayWorker } from '../relay/support';
import type { CustomerApp } from '../relay/support';
import { E2E_FROM, E2E_PROJECT, E2E_TOKEN, startStack } from './stack';
import type { Stack } from './stack';

/**
 * A compatibility send that names a cXML Application and no StatusCallback: SignalWire would
 * report its statuses to the Application's message status callback. Behind the proxy, whose
 * own callback URL takes that place, the app still gets them: the proxy reads the Application
 * (with the caller's credentials) and relays there. Official SDK → proxy → simulator → signed
 * callbacks → receiver → relay → the customer's app, all on real sockets.
 */

let stack: Stack;
let app: CustomerApp;
let worker: RelayWorker;
let tap: UpstreamTap;

beforeAll(async () => {
  stack = await startStack({ simulator: { stepDelayMs: 50 } });
  app = await startCustomerApp(SIMULATOR_SIGNING_KEY);
  worker = startRelayWorker(stack.app);
  // Counts the proxy's reads of Applications on their way to the simulator.
  tap = await startUpstreamTap({ forwardTo: stack.sim.url });
});

afterAll(async () => {
  await worker?.stop();
  await tap?.close();
  await app?.close();
  await stack?.close();
});

const client = () => sdkClient(stack.internalUrl, E2E_PROJECT, E2E_TOKEN);

async function sendWith(options: { applicationSid: string; statusCallback?: string; to: string }) {
  const message = await client().messages.create({
    from: E2E_FROM,
    body: 'application callback',
    ...options,
  });
  return message.sid;
}

const statusesAt = (id: string, path: string) =>
  app.received.filter((r) => r.messageId === id && r.path === path).map((r) => r.status);

test('When a send names an Application with a status callback and gives none itself, then every status reaches the Application’s URL, signed', async () => {
  // Created through the proxy (passed through to SignalWire), as an app would.
  const application = await client().applications.create({
    friendlyName: 'orders',
    messageStatusCallback: app.callbackUrl('/app/status'),
  });

  const id = await sendWith({ applicationSid: application.sid, to: '+15557651000' });
  await stack.sim.waitForIdle();

  const message = await stack.message(id);
  expect(message).toMatchObject({
    status: 'delivered',
    sent_via_proxy: true,
    client_status_callback: app.callbackUrl('/app/status'),
  });
  await eventually(() => statusesAt(id, '/app/status').length === 3);
  expect(statusesAt(id, '/app/status')).toEqual(['queued', 'sent', 'delivered']);
  const relayed = app.received.filter((r) => r.messageId === id);
  expect(relayed.every((r) => r.valid && r.answered === 200)).toBe(true);
});

test('When the send gives its own StatusCallback too, then that one is used, not the Application’s', async () => {
  const application = await client().applications.create({
    friendlyName: 'ignored',
    messageStatusCallback: app.callbackUrl('/app/unused'),
  });
  const id = await sendWith({
    applicationSid: application.sid,
    statusCallback: app.callbackUrl('/own/status'),
    to: '+15557651001',
  });
  await stack.sim.waitForIdle();

  await eventually(() => statusesAt(id, '/own/status').length === 3);
  expect(statusesAt(id, '/app/unused')).toEqual([]);
  expect((await stack.message(id))?.client_status_callback).toBe(app.callbackUrl('/own/status'));
});

test('When the Application has no status callback, then the message is stored and nothing is relayed', async () => {
  const application = await client().applications.create({ friendlyName: 'silent' });
  const id = await sendWith({ applicationSid: application.sid, to: '+15557651002' });
  await stack.sim.waitForIdle();

  const message = await stack.message(id);
  expect(message).toMatchObject({ status: 'delivered', client_status_callback: null });
  const jobs = await stack.app.database.db
    .selectFrom('relay_jobs')
    .select('id')
    .where('message_id', '=', id)
    .execute();
  expect(jobs).toEqual([]);
});

test('When the Application cannot be read (unknown to SignalWire), then the send still goes out and is stored, unrelayed', async () => {
  const id = await sendWith({
    applicationSid: '7b0c1e2d-3f4a-4b5c-8d6e-9f0a1b2c3d4e',
    to: '+15557651003',
  });
  await stack.sim.waitForIdle();
  expect(await stack.message(id)).toMatchObject({
    status: 'delivered',
    client_status_callback: null,
  });
});

describe('reading Applications', () => {
  let viaTap: Stack;
  beforeAll(async () => {
    viaTap = await startStack({ env: { SIGNALWIRE_SPACE_URL: tap.url } });
  });
  afterAll(async () => {
    await viaTap?.close();
  });

  test('When the Application cannot be read, then the send names it as given, and SignalWire decides', async () => {
    const unknown = '7b0c1e2d-3f4a-4b5c-8d6e-9f0a1b2c3d4e';
    const before = tap.requests.length;
    await sdkClient(viaTap.internalUrl, E2E_PROJECT, E2E_TOKEN).messages.create({
      from: E2E_FROM,
      to: '+15557652100',
      body: 'unknown application',
      applicationSid: unknown,
    });
    const sends = tap.requests.slice(before).filter((r) => r.method === 'POST');
    expect(sends).toHaveLength(1);
    expect(new URLSearchParams(sends[0]!.body).get('ApplicationSid')).toBe(unknown);
  });

  test('When the Application is read, then the send goes without it', async () => {
    const tapped = sdkClient(viaTap.internalUrl, E2E_PROJECT, E2E_TOKEN);
    const application = await tapped.applications.create({
      friendlyName: 'left out',
      messageStatusCallback: app.callbackUrl('/left-out'),
    });
    const before = tap.requests.length;
    await tapped.messages.create({
      from: E2E_FROM,
      to: '+15557652101',
      body: 'known application',
      applicationSid: application.sid,
    });
    const sends = tap.requests.slice(before).filter((r) => r.method === 'POST');
    expect(sends).toHaveLength(1);
    expect(new URLSearchParams(sends[0]!.body).has('ApplicationSid')).toBe(false);
  });

  test('When sends name the same Application in a burst, then it is read once, with the caller’s own credentials', async () => {
    const tapped = sdkClient(viaTap.internalUrl, E2E_PROJECT, E2E_TOKEN);
    const application = await tapped.applications.create({
      friendlyName: 'burst',
      messageStatusCallback: app.callbackUrl('/burst'),
    });
    const start = tap.requests.length;
    const reads = () =>
      tap.requests
        .slice(start)
        .filter((r) => r.method === 'GET' && r.path.includes('/Applications/'));
    for (let i = 0; i < 3; i++) {
      await tapped.messages.create({
        from: E2E_FROM,
        to: `+1555765200${i}`,
        body: 'burst',
        applicationSid: application.sid,
      });
    }
    expect(reads()).toHaveLength(1);
    expect(reads()[0]!.path).toBe(
      `/api/laml/2010-04-01/Accounts/${E2E_PROJECT}/Applications/${application.sid}.json`,
    );
    expect(reads()[0]!.headers['authorization']).toBe(
      `Basic ${Buffer.from(`${E2E_PROJECT}:${E2E_TOKEN}`).toString('base64')}`,
    );
  });
});

/**
 * Which callback wins when a send names an Application is not documented for SignalWire; on
 * Twilio, whose API the compatibility API follows, the Application's does, and the send's
 * StatusCallback is ignored. Were the ApplicationSid sent on, every callback would then go
 * past the proxy's URL and the message would stay `queued`: the proxy leaves it out once it
 * has read the Application, so both rules give the same result.
 */
describe('a SignalWire that lets the Application’s callback win, as Twilio documents', () => {
  let twilioRule: Stack;
  let ruleWorker: RelayWorker;
  beforeAll(async () => {
    twilioRule = await startStack({
      simulator: { stepDelayMs: 50, applicationCallbackFirst: true },
    });
    ruleWorker = startRelayWorker(twilioRule.app);
  });
  afterAll(async () => {
    await ruleWorker?.stop();
    await twilioRule?.close();
  });

  const ruleClient = () => sdkClient(twilioRule.internalUrl, E2E_PROJECT, E2E_TOKEN);

  test.each([
    ['gives no StatusCallback', undefined, '/app/status'],
    ['gives its own StatusCallback too', '/own/rule', '/own/rule'],
  ])(
    'When a send names an Application and %s, then SignalWire reports to the proxy, and the statuses are stored and relayed',
    async (_, own, relayedTo) => {
      const application = await ruleClient().applications.create({
        friendlyName: 'twilio rule',
        messageStatusCallback: app.callbackUrl('/app/status'),
      });
      const message = await ruleClient().messages.create({
        from: E2E_FROM,
        to: own ? '+15557653001' : '+15557653000',
        body: 'application callback',
        applicationSid: application.sid,
        ...(own && { statusCallback: app.callbackUrl(own) }),
      });
      await twilioRule.sim.waitForIdle();

      // The send reached SignalWire without the ApplicationSid: the proxy's URL is its callback.
      const simulated = twilioRule.sim.messages.find((m) => m.id === message.sid);
      expect(simulated?.statusCallback).toMatch(new RegExp(`^${twilioRule.publicUrl}/callbacks/`));
      expect(await twilioRule.message(message.sid)).toMatchObject({
        status: 'delivered',
        client_status_callback: app.callbackUrl(relayedTo),
      });
      await eventually(() => statusesAt(message.sid, relayedTo).length === 3);
      expect(statusesAt(message.sid, relayedTo)).toEqual(['queued', 'sent', 'delivered']);
    },
  );
});
