import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { E2E_PROJECT } from '../e2e/stack';
import { eventually } from '../relay/support';
import { startReconcilingStack } from './reconciling-stack';
import type { ReconcilingStack } from './reconciling-stack';

/**
 * Two projects share one sw-status, their keys bound to them: project A's listed first, project
 * B's (the simulator's) second. A message of B whose every callback is lost, and with no relay of
 * B before it, is reconciled: no relay tells which key B's app validates with, and its relay was
 * signed with the first key listed — project A's. It is signed with the key bound to B's project
 * (signing.ts relaySigningKey, the choice every relay makes). Found by review.
 */

jest.setTimeout(60_000);

const PROJECT_A = '11111111-2222-4333-8444-555555555555';
const PROJECT_A_KEY = 'PSK_project_a_signing_key_000000';
const LOST = '+15558650002';

let reconciling: ReconcilingStack;

beforeAll(async () => {
  reconciling = await startReconcilingStack({
    maxAttempts: 1,
    env: {
      SIGNALWIRE_SIGNING_KEYS: `${PROJECT_A}:${PROJECT_A_KEY},${E2E_PROJECT}:${SIMULATOR_SIGNING_KEY}`,
    },
    // The store is "down" for every callback of the messages to LOST: SignalWire drops them.
    loses: (event) => event.source === 'callback' && event.to === LOST,
  });
});

afterAll(() => reconciling.close());

test.each(['cxml', 'native'] as const)(
  'When every %s callback of project B’s message is lost and B has no relay before it, then the relay reconciliation makes is signed with the key bound to B’s project',
  async (api) => {
    const id = await reconciling.stack.send(api, LOST, {
      body: 'hello',
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
