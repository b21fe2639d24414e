import { request as httpRequest } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { createListener, listenOn, listenerSettings } from '../../src/http/listener';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { eventually } from '../helpers/eventually';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from './support';
import type { Listening } from './support';

/**
 * SIGNALWIRE_TIMEOUT_MS bounds SignalWire's silence within a passed-through answer, not the
 * caller's: a caller reading a long answer slowly pauses the upstream stream (back-pressure),
 * and once the socket buffers between are full no byte arrives from SignalWire because the
 * proxy stopped reading. 16 MiB is more than those buffers hold on loopback.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTslowreadertesttoken');
const PATH = `/2010-04-01/Accounts/${PROJECT}/Messages.json?PageSize=1000`;
// Not much shorter: a loaded machine's event loop can stall a few hundred ms, which a socket's
// idle timer counts as SignalWire's silence.
const TIMEOUT_MS = 1_000;
/** The caller's pause: well past SIGNALWIRE_TIMEOUT_MS. */
const PAUSE_MS = 2.5 * TIMEOUT_MS;
/** A page of messages as SignalWire answers it (the OpenAPI document's), padded to 16 MiB. */
const BIG = (() => {
  const [head, tail] = ['{"messages":[],"uri":"', '"}'];
  return Buffer.from(head + 'a'.repeat(16 * 1024 * 1024 - head.length - tail.length) + tail);
})();

let upstream: Listening;
let t: TestApp;
let proxy: Listening;
/** What the fake SignalWire does with each call. */
let answer: (res: ServerResponse) => void;
/** The connection the last call came on, and whether it has closed. */
let lastCall: { socket: Socket; closed: boolean } | undefined;

beforeAll(async () => {
  upstream = await listen((req, res) => {
    const call = { socket: req.socket, closed: false };
    req.socket.once('close', () => (call.closed = true));
    lastCall = call;
    req.resume();
    req.on('end', () => answer(res));
  });
  t = await createTestApp({
    SIGNALWIRE_SPACE_URL: upstream.url,
    SIGNALWIRE_TIMEOUT_MS: String(TIMEOUT_MS),
  });
  proxy = await listen(t.internalApp);
});

afterAll(async () => {
  await proxy.close();
  await t.close();
  await upstream.close();
});

function answerWhole(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': BIG.length });
  res.end(BIG);
}

/** The caller's answer: once `pausedMs` have passed, read to its end (or its cut). */
function readAfterPause(
  port: number,
  pausedMs: number,
): Promise<{ status: number; body: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path: PATH,
      headers: { authorization: AUTH },
      agent: false,
    });
    req.on('error', reject);
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.pause();
      setTimeout(() => res.on('data', (chunk: Buffer) => chunks.push(chunk)).resume(), pausedMs);
      res.on('error', () => undefined);
      res.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks),
          complete: res.complete,
        }),
      );
    });
    req.end();
  });
}

test('When the caller pauses reading a 16 MiB answer longer than SIGNALWIRE_TIMEOUT_MS, then it still gets the whole answer', async () => {
  answer = answerWhole;
  const got = await readAfterPause(proxy.port, PAUSE_MS);
  expect(got.status).toBe(200);
  expect(got.complete).toBe(true);
  expect(got.body.length).toBe(BIG.length);
  expect(got.body.equals(BIG)).toBe(true);
});

test('When SignalWire stops sending half-way while the caller reads, then the caller’s answer is cut off', async () => {
  answer = (res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1024 * 1024 });
    res.write(Buffer.alloc(64 * 1024, 'a')); // and nothing more, the connection kept open
  };
  const got = await readAfterPause(proxy.port, 0);
  expect(got.status).toBe(200);
  expect(got.complete).toBe(false);
  expect(got.body.length).toBe(64 * 1024);
  // The proxy gave up on SignalWire's connection too.
  await eventually(() => lastCall!.closed, 'the upstream connection closed');
});

test('When SignalWire stops sending after a caller’s long pause, then the caller’s answer is still cut off', async () => {
  answer = (res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 * BIG.length });
    res.write(BIG); // half, and nothing more, the connection kept open
  };
  const got = await readAfterPause(proxy.port, PAUSE_MS);
  expect(got.complete).toBe(false);
  expect(got.body.length).toBe(BIG.length);
  await eventually(() => lastCall!.closed, 'the upstream connection closed');
});

test('When the caller never reads again, then the listener’s stalledTimeoutMs cuts its connection and with it SignalWire’s', async () => {
  answer = answerWhole;
  lastCall = undefined;
  const stalledTimeoutMs = 5 * TIMEOUT_MS;
  const server = createListener(t.internalApp, { ...listenerSettings(t.config), stalledTimeoutMs });
  await listenOn(server, 0, ['127.0.0.1']);
  const caller = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  caller.on('error', () => undefined);
  try {
    await new Promise((resolve) => caller.once('connect', resolve));
    caller.pause(); // never reads
    caller.write(`GET ${PATH} HTTP/1.1\r\nHost: proxy\r\nAuthorization: ${AUTH}\r\n\r\n`);
    await eventually(() => lastCall !== undefined, 'the call reached SignalWire');
    // Past SIGNALWIRE_TIMEOUT_MS, well short of stalledTimeoutMs: the caller's pause is not
    // SignalWire's silence.
    await new Promise((resolve) => setTimeout(resolve, 2 * TIMEOUT_MS));
    expect(lastCall!.closed).toBe(false);
    await eventually(() => lastCall!.closed, 'the upstream connection closed');
  } finally {
    caller.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
