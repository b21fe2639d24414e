import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { createRelay } from '../../src/relay/relay';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { startStack } from '../e2e/stack';
import type { Stack } from '../e2e/stack';
import { eventually, startCustomerApp } from '../relay/support';
import type { CustomerApp } from '../relay/support';

/**
 * Two projects send through one sw-status (SIGNALWIRE_SIGNING_KEYS lists each project's signing
 * key). SignalWire signs every callback of project B with B's key. A callback that comes by its
 * per-send token (every send through the proxy) needs no signature, but its relay must still be
 * signed with the key SignalWire signed it with — the one B's app validates with, as it did
 * against SignalWire — not the first key listed (project A's): B's app would reject them all.
 */

jest.setTimeout(60_000);

const PROJECT_A_KEY = 'PSK_project_a_signing_key_000000';

let stack: Stack;
let app: CustomerApp;
let relay: RelayWorker;

beforeAll(async () => {
  // The simulator is project B: it signs with SIMULATOR_SIGNING_KEY.
  stack = await startStack({
    simulator: { stepDelayMs: 5 },
    env: { SIGNALWIRE_SIGNING_KEYS: `${PROJECT_A_KEY},${SIMULATOR_SIGNING_KEY}` },
  });
  app = await startCustomerApp(SIMULATOR_SIGNING_KEY);
  relay = createRelay({
    config: stack.app.config,
    db: stack.app.database.db,
    logger: stack.app.deps.logger,
    tuning: { pollMs: 20 },
  });
  relay.start();
});

afterAll(async () => {
  await relay.stop();
  await app.close();
  await stack.close();
});

test.each(['cxml', 'native'] as const)(
  'When project B’s signed %s callbacks come by their per-send token, then their relays are signed with B’s key (the one SignalWire signed with), so B’s app validateRequest passes',
  async (api) => {
    const id = await stack.send(api, '+15558650001', {
      body: 'hello',
      statusCallback: app.callbackUrl(`/sms/status/${api}`),
    });
    await stack.sim.waitForIdle();
    const delivered = await eventually(
      () => app.received.find((r) => r.messageId === id && r.status === 'delivered'),
      20_000,
    );
    expect(delivered.valid).toBe(true);
  },
);
