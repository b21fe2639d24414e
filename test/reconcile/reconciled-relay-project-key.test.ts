import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { eventually } from '../relay/support';
import { startReconcilingStack } from './reconciling-stack';
import type { ReconcilingStack } from './reconciling-stack';

/**
 * Two projects share one sw-status: SIGNALWIRE_SIGNING_KEYS lists project A's key first and
 * project B's (the simulator's) second. B's app validates its relays with B's key, and B's
 * earlier messages were relayed signed with it. A message of B whose every callback is lost is
 * reconciled; its relay must be signed with B's key too (the message is recorded as B's, and
 * B's key is known from B's other relays), not the first key listed: B's app refused it. Found
 * by review.
 */

jest.setTimeout(60_000);

const PROJECT_A_KEY = 'PSK_project_a_signing_key_000000';
const LOST = '+15558650002';

let reconciling: ReconcilingStack;

beforeAll(async () => {
  reconciling = await startReconcilingStack({
    maxAttempts: 1,
    env: { SIGNALWIRE_SIGNING_KEYS: `${PROJECT_A_KEY},${SIMULATOR_SIGNING_KEY}` },
    // The store is "down" for every callback of the messages to LOST: SignalWire drops them.
    loses: (event) => event.source === 'callback' && event.to === LOST,
  });
});

afterAll(() => reconciling.close());

test.each(['cxml', 'native'] as const)(
  'When every %s callback of project B’s message is lost and reconciliation relays its status, then the relay is signed with B’s key as B’s other relays are',
  async (api) => {
    // B's message whose callbacks arrive: relayed signed with B's key, B's app accepts them.
    const first = await reconciling.stack.send(api, '+15558650001', {
      body: 'hello',
      statusCallback: reconciling.app.callbackUrl(`/sms/status/${api}`),
    });
    const firstDelivered = await eventually(
      () => reconciling.app.received.find((r) => r.messageId === first && r.status === 'delivered'),
      20_000,
    );
    expect(firstDelivered.valid).toBe(true);

    // B's message whose every callback is lost: only reconciliation tells the app.
    const id = await reconciling.stack.send(api, LOST, {
      body: 'hello again',
      statusCallback: reconciling.app.callbackUrl(`/sms/status/${api}`),
    });
    const reconciled = await eventually(
      () =>
        reconciling.app.received.find(
          (r) => r.messageId === id && (r.status === 'delivered' || r.status === 'sent'),
        ),
      20_000,
    );
    expect(reconciled.valid).toBe(true);
  },
);
