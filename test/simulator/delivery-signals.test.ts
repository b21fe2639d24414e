import { createServer } from 'node:http';
import type { RequestListener, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getEventListeners } from 'node:events';
import { deliver } from '../../src/simulator/callback-delivery';
import type { CallbackDelivery } from '../../src/simulator/callback-delivery';

/**
 * The simulator's deliveries all hang off one long-lived shutdown signal. Each attempt's own
 * signal (shutdown or its timeout) must let go of it once the attempt is over: with
 * AbortSignal.any, Node 20 kept one entry per callback ever delivered on the shutdown signal,
 * so `npm start` and load runs against the simulator grew without limit.
 */

let app: Server;
let shutdown: AbortController;

/** An app answering as `listener` does; `url()` is its callback URL. */
async function startApp(listener: RequestListener): Promise<void> {
  app = createServer(listener);
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
}
const url = (): string => `http://127.0.0.1:${(app.address() as AddressInfo).port}/status`;
const newDelivery = (): CallbackDelivery =>
  ({
    url: url(),
    contentType: 'application/x-www-form-urlencoded',
    rawBody: 'MessageStatus=sent',
    signature: 'x',
    attempts: [],
    outcome: 'pending',
  }) as unknown as CallbackDelivery;
const neverAnswers: RequestListener = () => undefined;

beforeEach(() => {
  shutdown = new AbortController();
});

afterEach(async () => {
  // Whatever happened, the shutdown signal is left with no listener of a delivery's.
  expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0);
  app.closeAllConnections();
  await new Promise((resolve) => app.close(resolve));
});

test('When many callbacks have been delivered, then the shutdown signal holds nothing of theirs', async () => {
  await startApp((_req, res) => res.end('ok'));
  for (let i = 0; i < 50; i++) {
    const delivery = newDelivery();
    const policy = { maxAttempts: 1, retryBackoffMs: 0, timeoutMs: 5_000 };
    await deliver(delivery, policy, shutdown.signal);
    expect(delivery.outcome).toBe('delivered');
  }
  // Node 20's AbortSignal.any bookkeeping (an internal set of dependants), where it exists.
  const dependants = Object.getOwnPropertySymbols(shutdown.signal)
    .filter((symbol) => symbol.description === 'kDependantSignals')
    .map((symbol) => (shutdown.signal as unknown as Record<symbol, Set<unknown>>)[symbol]);
  for (const set of dependants) expect(set?.size ?? 0).toBe(0);
});

test('When the simulator shuts down during an attempt, then the attempt is cut and the delivery rejects', async () => {
  await startApp(neverAnswers);
  const delivery = newDelivery();
  const policy = { maxAttempts: 3, retryBackoffMs: 0, timeoutMs: 30_000 };
  const pending = deliver(delivery, policy, shutdown.signal);
  setTimeout(() => shutdown.abort(new Error('simulator stopping')), 100);
  await expect(pending).rejects.toThrow();
  expect(delivery.attempts).toHaveLength(1);
});

test('When an attempt gets no answer within the timeout, then it is cut and the next one goes', async () => {
  await startApp(neverAnswers);
  const delivery = newDelivery();
  await deliver(delivery, { maxAttempts: 2, retryBackoffMs: 0, timeoutMs: 100 }, shutdown.signal);
  expect(delivery.outcome).toBe('dropped');
  expect(delivery.attempts.map((attempt) => attempt.error)).toEqual([
    expect.stringMatching(/timed out/),
    expect.stringMatching(/timed out/),
  ]);
});
