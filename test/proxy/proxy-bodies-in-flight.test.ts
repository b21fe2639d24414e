import { createServer, request as httpRequest, Agent } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from './support';
import type { Listening } from './support';

/**
 * The callback receiver bounds the large bodies it holds at once (CALLBACK_BODY_BYTES_IN_FLIGHT);
 * the send proxy held every send it was forwarding — up to HTTP_MAX_CONNECTIONS bodies of
 * 256 KiB, each read whole, decoded, parsed and written again — for as long as SignalWire took
 * to answer. Measured by review on the real process: 400 concurrent sends of 250 KiB with
 * SignalWire slow took RSS from 141 MB to 550 MB, past the pod's 512 MiB limit: the kill cuts
 * every callback in flight with it. Now (PROXY_BODY_BYTES_IN_FLIGHT) the bodies held stay within
 * 16 MiB plus one; sends past it are refused 503 with Retry-After before they are read, not sent.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTsizingtoken');
const SENDS = 96; // 96 × 250 KiB ≈ 24 MiB
const BUDGET = 16 * 1024 * 1024;

let upstream: Listening;
let t: TestApp;
let proxy: Server;
const held: ServerResponse[] = [];
let upstreamBytes = 0;
let upstreamBodies = 0;
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
    req.on('data', (c: Buffer) => (size += c.length));
    req.on('end', () => {
      upstreamBytes += size;
      upstreamBodies++;
      held.push(res); // SignalWire slow to answer: held until the test ends
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

test('With SignalWire slow to answer, concurrent 250 KiB sends hold at most a bounded number of bytes; the rest are refused 503 with Retry-After', async () => {
  const { port } = proxy.address() as AddressInfo;
  const agent = new Agent({ keepAlive: false, maxSockets: SENDS });
  const refused: Array<{ status: number; retryAfter: string | undefined }> = [];
  const settled = new Promise<void>((resolve) => {
    progress = () => {
      if (upstreamBodies + refused.length >= SENDS) resolve();
    };
  });
  for (let i = 0; i < SENDS; i++) {
    const body = sendBody(i);
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
      refused.push({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] });
      progress();
    });
    req.on('error', () => undefined);
    req.end(body);
  }
  // Every send either reached (and is held by) the slow upstream or was answered by the proxy.
  await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, 20_000))]);
  agent.destroy();

  expect(upstreamBodies + refused.length).toBe(SENDS);
  // What the proxy holds for sends waiting on SignalWire stays within a byte budget.
  expect(upstreamBytes).toBeLessThanOrEqual(BUDGET + 256 * 1024);
  expect(refused.length).toBeGreaterThan(0);
  for (const r of refused) {
    expect(r.status).toBe(503);
    expect(r.retryAfter).toBe('1');
  }
});
