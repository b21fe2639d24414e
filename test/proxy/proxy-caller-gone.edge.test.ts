import { createServer, request as httpRequest } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from './support';
import type { Listening } from './support';

/**
 * A send that names an ApplicationSid waits for SignalWire to answer the Application read
 * before it is forwarded (up to SIGNALWIRE_TIMEOUT_MS). A client that gave up meanwhile counts
 * the send as failed and retries it: the proxy must not forward the first one after all.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const APPLICATION = '3b8e0c3e-8f8a-4a51-9c5e-2b1f7f6f2a10';
const AUTH = basicAuthHeader(PROJECT, 'PTcallergonetoken');

let upstream: Listening;
let t: TestApp;
let proxy: Server;
const creates: string[] = [];
let lookupArrived: () => void = () => undefined;
let pendingLookup: ServerResponse | undefined;
/** Resolves with the status of each answer the proxy ends, in order. */
let ended: (status: number) => void = () => undefined;
let closed: () => void = () => undefined;

beforeAll(async () => {
  upstream = await listen((req, res) => {
    if (req.method === 'GET' && /\/Applications\//.test(req.url ?? '')) {
      // Held until the test has seen the caller go.
      pendingLookup = res;
      lookupArrived();
      return;
    }
    req.resume();
    req.on('end', () => {
      creates.push(req.url ?? '');
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ sid: '0a059168-ead0-41af-9d1f-343dae832527', status: 'queued' }));
    });
  });
  t = await createTestApp({ SIGNALWIRE_SPACE_URL: upstream.url });
  proxy = createServer((req, res) => {
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    res.end = ((...args: unknown[]) => {
      ended(res.statusCode);
      return end(...args);
    }) as typeof res.end;
    t.internalApp(req, res);
  });
  // Registered before the app's own listeners on each socket, so it runs first.
  proxy.on('connection', (socket) => socket.on('close', () => closed()));
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  proxy.closeAllConnections();
  await new Promise((resolve) => proxy.close(resolve));
  await t.close();
  await upstream.close();
});

test('When the caller goes away while the Application is read, then the send is not forwarded', async () => {
  const arrived = new Promise<void>((resolve) => (lookupArrived = resolve));
  const socketClosed = new Promise<void>((resolve) => (closed = resolve));
  const answered = new Promise<number>((resolve) => (ended = resolve));

  const { port } = proxy.address() as AddressInfo;
  const req = httpRequest({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`,
    headers: { authorization: AUTH, 'content-type': 'application/x-www-form-urlencoded' },
  });
  req.on('error', () => undefined);
  req.end(
    new URLSearchParams({
      To: '+15557654321',
      From: '+15551234567',
      Body: 'x',
      ApplicationSid: APPLICATION,
    }).toString(),
  );

  await arrived;
  // The client's own timeout fires: it closes the connection and will retry the send.
  req.destroy();
  await socketClosed;
  pendingLookup!.writeHead(200, { 'content-type': 'application/json' });
  pendingLookup!.end(JSON.stringify({ message_status_callback: 'https://app.example.com/s' }));

  expect(await answered).toBe(499);
  expect(creates).toEqual([]);
});
