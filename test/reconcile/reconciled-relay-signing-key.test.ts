import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { eventually } from '../relay/support';
import { startReconcilingStack } from './reconciling-stack';
import type { ReconcilingStack } from './reconciling-stack';

/**
 * Two projects share one sw-status: SIGNALWIRE_SIGNING_KEYS lists project A's key first and
 * project B's (the simulator's) second. Project B's message: its `sent` callback arrives (by
 * token, signed with B's key) and is relayed signed with B's key. Its `delivered` callback is
 * lost; reconciliation stands in for it, and its relay must be signed with the key the message's
 * other relays were signed with (B's), not the first key: B's app validates with B's key.
 */

jest.setTimeout(60_000);

const PROJECT_A_KEY = 'PSK_project_a_signing_key_000000';

let reconciling: ReconcilingStack;

beforeAll(async () => {
  reconciling = await startReconcilingStack({
    maxAttempts: 1,
    env: { SIGNALWIRE_SIGNING_KEYS: `${PROJECT_A_KEY},${SIMULATOR_SIGNING_KEY}` },
    // The store is "down" for the delivered callback only: SignalWire drops it (one attempt).
    loses: (event) => event.source === 'callback' && event.status === 'delivered',
  });
});

afterAll(() => reconciling.close());

test.each(['cxml', 'native'] as const)(
  'When project B’s %s delivered callback is lost and reconciliation relays it, then it is signed with B’s key like the message’s other relays, so B’s app accepts it',
  async (api) => {
    const id = await reconciling.stack.send(api, '+15558650001', {
      body: 'hello',
      statusCallback: reconciling.app.callbackUrl(`/sms/status/${api}`),
    });
    await reconciling.stack.sim.waitForIdle();
    const sent = await eventually(
      () => reconciling.app.received.find((r) => r.messageId === id && r.status === 'sent'),
      20_000,
    );
    // The fix under review: the token callback's relay is signed with B's key.
    expect(sent.valid).toBe(true);
    const delivered = await eventually(
      () => reconciling.app.received.find((r) => r.messageId === id && r.status === 'delivered'),
      20_000,
    );
    expect(delivered.valid).toBe(true);
  },
);
