import { createServer, request as httpRequest, Agent } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from './support';
import type { Listening } from './support';

/**
 * The bound on request bodies held at once (proxy-http.ts bodyReader) first reserved a chunked
 * body (a client that streams its body: no Content-Length) at PROXY_BODY_LIMIT (256 KiB),
 * whatever it held: 64 ordinary 200-byte sends at once while SignalWire took its time filled
 * the 16 MiB bound, and the 65th was refused 503. A chunked body now counts as it arrives.
 * Found by review.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTsizingtoken');
const SENDS = 80;

let upstream: Listening;
let t: TestApp;
let proxy: Server;
const held: ServerResponse[] = [];
let received = 0;
let progress: () => void = () => undefined;

beforeAll(async () => {
  upstream = await listen((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      held.push(res);
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

test('When many small sends arrive at once with chunked bodies while SignalWire is slow, then none is refused 503 busy', async () => {
  const { port } = proxy.address() as AddressInfo;
  const agent = new Agent({ keepAlive: false, maxSockets: SENDS });
  const answered: number[] = [];
  const settled = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 20_000);
    progress = () => {
      if (received + answered.length >= SENDS) {
        clearTimeout(timer);
        resolve();
      }
    };
  });
  for (let i = 0; i < SENDS; i++) {
    const body = new URLSearchParams({
      From: '+15551234567',
      To: `+1555765${String(i).padStart(4, '0')}`,
      Body: 'Your code is 123456',
    }).toString();
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      agent,
      method: 'POST',
      path: `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`,
      headers: { authorization: AUTH, 'content-type': 'application/x-www-form-urlencoded' },
    });
    req.on('response', (res) => {
      res.resume();
      answered.push(res.statusCode ?? 0);
      progress();
    });
    req.on('error', () => undefined);
    req.write(body); // no Content-Length: Transfer-Encoding: chunked
    req.end();
  }
  await settled;
  agent.destroy();
  expect({
    reachedSignalWire: received,
    refused: answered.filter((s) => s === 503).length,
  }).toEqual({
    reachedSignalWire: SENDS,
    refused: 0,
  });
}, 40_000);
