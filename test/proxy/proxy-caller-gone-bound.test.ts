import { createServer, request as httpRequest, Agent } from 'node:http';
import type { ClientRequest, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from './support';
import type { Listening } from './support';

/**
 * The bound on request bodies held at once (PROXY_BODY_BYTES_IN_FLIGHT) was released at the
 * caller's `res` 'close'. A caller that gives up (its client timeout shorter than
 * SIGNALWIRE_TIMEOUT_MS, the very case of "SignalWire slow") closes its connection, and its room
 * was given back at once — while the proxy went on holding that body until SignalWire answered.
 * Retries then took the freed room, and the bodies held grew past the bound by one budget per
 * client timeout. Found by review.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTsizingtoken');
const WAVE = 60; // 60 × 250 KiB ≈ 15 MiB: within the bound
const BUDGET = 16 * 1024 * 1024;
const BODY_BYTES = 250 * 1024;

let upstream: Listening;
let t: TestApp;
let proxy: Server;
const held: ServerResponse[] = [];
let open = 0; // sends the proxy is still waiting on SignalWire for (bodies it holds)
let openBytes = 0; // and their bodies' bytes
let received = 0;
let progress: () => void = () => undefined;

function sendBody(i: number): string {
  const pairs: Array<[string, string]> = [
    ['From', '+15551234567'],
    ['To', `+1555765${String(i).padStart(4, '0')}`],
    ['Body', 'hello'],
  ];
  for (let m = 0; m < 8; m++)
    pairs.push(['MediaUrl', `https://media.example.com/${i}/${m}/${'m'.repeat(31_000)}`]);
  return new URLSearchParams(pairs).toString();
}

beforeAll(async () => {
  upstream = await listen((req, res) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => (size += chunk.length));
    req.on('end', () => {
      received++;
      open++;
      openBytes += size;
      res.once('close', () => {
        open--;
        openBytes -= size;
      });
      held.push(res); // SignalWire slow to answer
      progress();
    });
  });
  t = await createTestApp({ SIGNALWIRE_SPACE_URL: upstream.url, SIGNALWIRE_TIMEOUT_MS: '60000' });
  proxy = createServer((req, res) => t.internalApp(req, res));
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  for (const res of held) res.destroy();
  proxy.closeAllConnections();
  await new Promise((resolve) => proxy.close(resolve));
  await t.close();
  await upstream.close();
});

function wave(from: number, agent: Agent, answered: number[]): ClientRequest[] {
  const { port } = proxy.address() as AddressInfo;
  const reqs: ClientRequest[] = [];
  for (let i = from; i < from + WAVE; i++) {
    const body = sendBody(i);
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(BODY_BYTES);
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      agent,
      method: 'POST',
      path: `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`,
      headers: {
        authorization: AUTH,
        'content-type': 'application/x-www-form-urlencoded',
        'content-length': String(Buffer.byteLength(body)),
      },
    });
    req.on('response', (res) => {
      res.resume();
      answered.push(res.statusCode ?? 0);
      progress();
    });
    req.on('error', () => undefined);
    req.end(body);
    reqs.push(req);
  }
  return reqs;
}

const until = (done: () => boolean, ms = 20_000) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    progress = () => {
      if (done()) {
        clearTimeout(timer);
        resolve();
      }
    };
    progress();
  });

test('When callers give up on sends SignalWire is slow to answer and send again, then the bodies the proxy holds while waiting on SignalWire stay within PROXY_BODY_BYTES_IN_FLIGHT', async () => {
  const agent = new Agent({ keepAlive: false, maxSockets: 4 * WAVE });
  const answered: number[] = [];
  // First wave: every send reaches SignalWire, which does not answer yet.
  const first = wave(0, agent, answered);
  await until(() => received >= WAVE);
  expect(received).toBe(WAVE);
  // The callers' clients time out and close their connections.
  for (const req of first) req.destroy();
  await new Promise((resolve) => setTimeout(resolve, 500));
  // The proxy still waits on SignalWire for every one of them: it holds their bodies.
  expect(open).toBe(WAVE);
  // The callers send again.
  wave(WAVE, agent, answered);
  await until(() => received + answered.length >= 2 * WAVE);
  agent.destroy();

  // What the proxy holds at once for sends waiting on SignalWire stays within the budget.
  expect(openBytes).toBeLessThanOrEqual(BUDGET + 256 * 1024);
  // Some of the second wave were refused 503 busy (not sent) rather than held.
  expect(answered.filter((status) => status === 503).length).toBeGreaterThan(0);
}, 40_000);
