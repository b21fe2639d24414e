import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { directRecorder } from '../../src/messages/event-recorder';
import type { EventRecorder } from '../../src/messages/event-recorder';
import type { StatusEvent } from '../../src/messages/status-event';
import { createMessageLookup } from '../../src/reconcile/lookup-client';
import { createRelay } from '../../src/relay/relay';
import { E2E_PROJECT, E2E_TOKEN, startStack } from '../e2e/stack';
import type { Stack } from '../e2e/stack';
import { startCustomerApp } from '../relay/support';
import type { CustomerApp } from '../relay/support';
import { startTestSweep } from './support';

/**
 * The whole service with what stands in for a lost callback running: the simulator as
 * SignalWire (callbacks 20 ms apart), the relay to an app's own callback URL, and the sweep
 * looking messages up after 400 and 800 ms, when the simulator's callbacks are all in. For
 * the tests of what the app is told when a callback is lost.
 */
export interface ReconcilingStack {
  stack: Stack;
  app: CustomerApp;
  close(): Promise<void>;
}

export async function startReconcilingStack(
  options: {
    /**
     * The events the receiver's store is "down" for (SignalWire's callbacks to them are
     * dropped after the simulator's tries); the rest are recorded as usual.
     */
    loses?: (event: StatusEvent) => boolean;
    /** How many times the simulator tries each callback (its default when unset). */
    maxAttempts?: number;
    /** More of the service's environment (e.g. SIGNALWIRE_SIGNING_KEYS). */
    env?: Record<string, string>;
  } = {},
): Promise<ReconcilingStack> {
  const stack = await startStack({
    simulator: {
      stepDelayMs: 20,
      ...(options.maxAttempts !== undefined && { maxAttempts: options.maxAttempts }),
      credentials: { projectId: E2E_PROJECT, token: E2E_TOKEN },
    },
    env: { RELAY_RETRY_SCHEDULE: '50ms', ...options.env },
    ...(options.loses && { recorder: losing(options.loses) }),
  });
  const app = await startCustomerApp(SIMULATOR_SIGNING_KEY);
  const { db } = stack.app.database;
  const { logger } = stack.app.deps;
  const relay = createRelay({ config: stack.app.config, db, logger, tuning: { pollMs: 20 } });
  relay.start();
  const sweep = startTestSweep({
    db,
    lookup: createMessageLookup({
      baseUrl: stack.sim.url,
      credentials: new Map([[E2E_PROJECT, { projectIdAsWritten: E2E_PROJECT, token: E2E_TOKEN }]]),
      timeoutMs: 15_000,
    }),
    projects: [E2E_PROJECT],
    schedule: [400, 800],
    recordOptions: { onRelaysEnqueued: relay.wake },
  });
  return {
    stack,
    app,
    async close() {
      await sweep.stop();
      await relay.stop();
      await app.close();
      await stack.close();
    },
  };
}

/** A recorder whose store refuses the events `loses` picks, as a database down would. */
function losing(loses: (event: StatusEvent) => boolean) {
  return (deps: { db: Parameters<typeof directRecorder>[0] }): EventRecorder => {
    const inner = directRecorder(deps.db);
    return {
      record: (event) =>
        loses(event) ? Promise.reject(new Error('db down')) : inner.record(event),
      drain: () => inner.drain(),
    };
  };
}
