import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import type { AppDeps } from '../../src/app';
import type { EventRecorder } from '../../src/messages/event-recorder';
import type { MessageDto } from '../../src/messages/message-dto';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { buildDelivery } from '../../src/simulator/callback-delivery';
import type { SimulatedMessage } from '../../src/simulator/message-resources';
import type { ScenarioStep } from '../../src/simulator/scenarios';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator, SimulatorOptions } from '../../src/simulator/simulator';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen, listenFirst, sdkClient } from '../proxy/support';

export const E2E_PROJECT = 'd4e5f6a7-b8c9-4012-8ef0-34567890abcd';
export const E2E_TOKEN = 'PTe2etesttoken';
export const E2E_FROM = '+15559876543';

export interface SendOptions {
  body: string;
  /** One media URL: an MMS. */
  mms?: boolean;
  /** The client's own status callback. */
  statusCallback?: string;
  /** Native sends only: echoed by every native callback. */
  customVariables?: Record<string, string>;
}

/**
 * The whole service over real sockets, as a deployment runs it: the proxy on the internal
 * listener, the simulator as SignalWire on its own port, the receiver on the public listener
 * that the simulator's signed callbacks reach through PUBLIC_BASE_URL.
 */
export interface Stack {
  sim: RunningSimulator;
  app: TestApp;
  /** The internal listener: send proxy and query API. */
  internalUrl: string;
  /** The public listener: PUBLIC_BASE_URL. */
  publicUrl: string;
  /**
   * Sends through the proxy as a client would: compatibility with the official SDK, native as
   * the seed 001 curl example (`curl -u project:token -H 'Content-Type: application/json'
   * -d '{…}'`) over fetch. Returns the provider's message id.
   */
  send(api: 'cxml' | 'native', to: string, options: SendOptions): Promise<string>;
  /** GET /v1/messages/:id with the bearer token; null on 404. */
  message(id: string): Promise<MessageDto | null>;
  close(): Promise<void>;
}

export async function startStack(
  options: {
    simulator?: SimulatorOptions;
    recorder?: (deps: Omit<AppDeps, 'recorder'>) => EventRecorder;
    /** More configuration (e.g. reconciliation's credentials and schedule). */
    env?: Record<string, string>;
  } = {},
): Promise<Stack> {
  // The receiver's port must be known before the app is configured with it.
  const receiver = await listenFirst();
  const sim = await startSimulator({ retryBackoffMs: 20, ...options.simulator });
  const app = await createTestApp(
    {
      PUBLIC_BASE_URL: receiver.url,
      SIGNALWIRE_SPACE_URL: sim.url,
      SIGNALWIRE_SIGNING_KEYS: SIMULATOR_SIGNING_KEY,
      ...options.env,
    },
    options.recorder ? { recorder: options.recorder } : {},
  );
  receiver.use(app.publicApp);
  const internal = await listen(app.internalApp);
  const media = ['https://example.com/tracking.png'];
  return {
    sim,
    app,
    internalUrl: internal.url,
    publicUrl: receiver.url,
    async send(api, to, options) {
      if (api === 'cxml') {
        const message = await sdkClient(internal.url, E2E_PROJECT, E2E_TOKEN).messages.create({
          from: E2E_FROM,
          to,
          body: options.body,
          ...(options.statusCallback && { statusCallback: options.statusCallback }),
          ...(options.mms && { mediaUrl: media }),
        });
        return message.sid;
      }
      const res = await fetch(`${internal.url}/api/messaging/messages`, {
        method: 'POST',
        headers: {
          authorization: basicAuthHeader(E2E_PROJECT, E2E_TOKEN),
          'content-type': 'application/json',
        },
        body: JSON.stringify({
          to,
          from: E2E_FROM,
          body: options.body,
          ...(options.statusCallback && { status_callback: options.statusCallback }),
          ...(options.mms && { media }),
          ...(options.customVariables && { custom_variables: options.customVariables }),
        }),
      });
      if (res.status !== 201) throw new Error(`native send: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { id: string }).id;
    },
    async message(id) {
      const res = await fetch(`${internal.url}/v1/messages/${encodeURIComponent(id)}`, {
        headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
      });
      if (res.status === 404) return null;
      if (res.status !== 200) throw new Error(`GET /v1/messages/${id}: ${res.status}`);
      return (await res.json()) as MessageDto;
    },
    async close() {
      await sim.close();
      await internal.close();
      await receiver.close();
      await app.close();
    },
  };
}

/**
 * A signed callback of SignalWire's for `message`, built as the simulator builds them (with the
 * message as the simulator holds it now) for `step` at `at`, and delivered now: a retry, or a
 * receipt that comes late. What it sent and the receiver's answer.
 */
export async function deliverCallback(
  message: SimulatedMessage,
  step: Pick<ScenarioStep, 'status' | 'errorCode' | 'errorMessage'>,
  at: Date,
): Promise<{ sent: string; status: number }> {
  const delivery = buildDelivery(
    999,
    message,
    { ...step, copies: 1, delaySteps: 0 },
    1,
    SIMULATOR_SIGNING_KEY,
    at,
  );
  const answer = await fetch(delivery.url, {
    method: 'POST',
    headers: { 'content-type': delivery.contentType, 'x-signalwire-signature': delivery.signature },
    body: delivery.rawBody,
  });
  return { sent: delivery.rawBody, status: answer.status };
}

/**
 * SignalWire's retry of a `delivered` callback it composed earlier: built from `message` as the
 * simulator held it then (a copy taken before a change, e.g. a redaction), signed, delivered
 * now. What it sent (the JSON body) and the receiver's answer.
 */
export async function deliverComposedEarlier(
  message: SimulatedMessage,
): Promise<{ sent: Record<string, unknown>; status: number }> {
  const { sent, status } = await deliverCallback(
    message,
    { status: 'delivered', errorCode: null, errorMessage: null },
    new Date(Date.now() - 5_000),
  );
  return { sent: JSON.parse(sent) as Record<string, unknown>, status };
}
