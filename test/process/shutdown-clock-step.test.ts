import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { createInFlight } from '../../src/process/in-flight';
import { startShutdown } from '../../src/process/shutdown';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * The send proxy forwards nothing whose answer could come after the connections are cut
 * (src/proxy/proxy.service.ts), and the process exits when the grace period is spent (a
 * monotonic timer). The cut is on the monotonic clock too: judged on the wall clock, NTP
 * stepping it back during the shutdown made the proxy forward a send it would have refused
 * (503, "not sent, send it again"), and the process exited before SignalWire's answer — the
 * caller, cut off, sent again: a duplicate SMS.
 */
const PROJECT = 'c3d4e5f6-a7b8-4901-8def-234567890abc';
const AUTH = basicAuthHeader(PROJECT, 'PTreviewtoken');
const COMPAT_CREATE = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;

let t: TestApp;
let upstream: Server;
let received = 0;
beforeAll(async () => {
  // SignalWire takes the send and is slow to answer (never, here: the proxy's timeout answers).
  upstream = createServer((req) => {
    req.resume();
    req.on('end', () => (received += 1));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t = await createTestApp({
    SIGNALWIRE_SPACE_URL: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    SIGNALWIRE_TIMEOUT_MS: '8000',
  });
});
afterAll(async () => {
  jest.restoreAllMocks();
  upstream.closeAllConnections();
  await new Promise((r) => upstream.close(r));
  await t.close();
});

async function sendDuringShutdown(stepBackMs: number) {
  received = 0;
  t.deps.lifecycle.draining = false;
  t.deps.lifecycle.sends = createInFlight();
  const server = createServer(t.internalApp);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  let exitedAt: number | null = null;
  const started = performance.now();
  const recorder = {
    drain: async () => {},
    status: () => ({ database: 'ok', spool: { state: 'disabled', depth: 0, dead_letters: 0 } }),
  } as unknown as GroupCommitRecorder;
  // SIGTERM: 5 s grace, keep serving 4 s while the load balancer takes the pod out.
  startShutdown(
    {
      config: { shutdownDelayMs: 4_000, shutdownDrainMs: 500, shutdownGraceMs: 5_000 },
      logger: t.deps.logger,
      lifecycle: t.deps.lifecycle,
      servers: [server],
      recorder,
      closers: [],
      exit: () => (exitedAt ??= performance.now() - started),
    },
    'SIGTERM',
  );
  // NTP steps the wall clock back just after the signal.
  const realNow = Date.now.bind(Date);
  if (stepBackMs) jest.spyOn(Date, 'now').mockImplementation(() => realNow() - stepBackMs);
  let answeredAt: number | null = null;
  let status: number | null = null;
  const pending = request(server)
    .post(COMPAT_CREATE)
    .set('Authorization', AUTH)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send('To=%2B15557650000&From=%2B15551234567&Body=x')
    .then(
      (res) => ((status = res.status), (answeredAt = performance.now() - started)),
      () => ((status = -1), (answeredAt = performance.now() - started)),
    );
  // Wait until the process "exits" (the grace backstop) or the send is answered.
  while (exitedAt === null && performance.now() - started < 7_000) {
    await new Promise((r) => setTimeout(r, 25));
  }
  jest.restoreAllMocks();
  const outcome = {
    exitedAt,
    answeredBeforeExit: answeredAt !== null && (exitedAt === null || answeredAt <= exitedAt),
    status,
    reachedSignalWire: received,
  };
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await pending.catch(() => undefined);
  return outcome;
}

test('Control: without a clock step, a send too late to be answered before the cut is refused 503 and never reaches SignalWire', async () => {
  const outcome = await sendDuringShutdown(0);
  expect(outcome).toMatchObject({ status: 503, answeredBeforeExit: true, reachedSignalWire: 0 });
}, 20_000);

test('When the wall clock steps back 60 s during the shutdown, then a send is still either refused 503 or answered before the process exits', async () => {
  const outcome = await sendDuringShutdown(60_000);
  expect({
    answeredBeforeExit: outcome.answeredBeforeExit,
    reachedSignalWire: outcome.reachedSignalWire,
  }).toEqual({
    answeredBeforeExit: true,
    reachedSignalWire: 0,
  });
}, 20_000);
