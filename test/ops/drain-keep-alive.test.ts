import http from 'node:http';
import type { Server } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createListener, listenOn } from '../../src/http/listener';
import type { ListenerSettings } from '../../src/http/listener';
import { closeServer } from '../../src/process/listen';
import { eventually } from '../helpers/eventually';

/**
 * The drain (src/process/shutdown.ts → closeServer) on keep-alive connections, which is how
 * the Ingress controller and the apps' HTTP clients (the SignalWire SDK through the send
 * proxy) talk to the pod. A request in flight when the listener closes is answered with
 * `Connection: close`, or its connection is ended right after the answer, so the drain ends
 * once in-flight work is answered. Otherwise the client keeps sending on the connection until
 * the drain deadline cuts it — mid-request, e.g. a send the proxy already forwarded to
 * SignalWire — and every shutdown waits SHUTDOWN_DRAIN_MS in full.
 */

// The listeners' settings (src/http/listener.ts), keep-alive above the balancer's 60 s.
const settings: ListenerSettings = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 65_000,
  maxConnections: 100,
  timeoutCheckIntervalMs: 1_000,
  maxOwedAnswers: 32,
  maxBodyPieces: 64,
  stalledTimeoutMs: 120_000,
  idleToFreeMs: 5_000,
  sendTimeoutMs: 20_000,
  maxUnflushedBytes: 64 * 1024,
};
// SHUTDOWN_DRAIN_MS as configmap.yaml sets it; a drain that ends well before it ended by itself.
const DRAIN_MS = 15_000;
const ENDED_BY_ITSELF_MS = 5_000;

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    if (server.listening) await new Promise((resolve) => server.close(resolve));
  }
});

/**
 * A listener whose GET /slow answers after 300 ms (a send-proxy request waiting on SignalWire);
 * `slowBegun` resolves when the first one reaches the app.
 */
async function start(): Promise<{ server: Server; port: number; slowBegun: Promise<void> }> {
  const app = express();
  let begun!: () => void;
  const slowBegun = new Promise<void>((resolve) => (begun = resolve));
  app.get('/slow', (_req, res) => {
    begun();
    setTimeout(() => res.json({ ok: true }), 300);
  });
  // The answer begun at once (headers sent, saying keep-alive), its end 300 ms later.
  app.get('/streamed', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.write('begun;');
    setTimeout(() => res.end('ended'), 300);
  });
  const server = createListener(app, settings);
  servers.push(server);
  await listenOn(server, 0, ['127.0.0.1']);
  return { server, port: (server.address() as AddressInfo).port, slowBegun };
}

/** Whether the drain ended by itself within ENDED_BY_ITSELF_MS, and how long it took. */
async function drainEnds(drained: Promise<boolean>, started: number) {
  const outcome = await Promise.race([
    drained,
    new Promise<'still draining'>((resolve) =>
      setTimeout(() => resolve('still draining'), ENDED_BY_ITSELF_MS).unref(),
    ),
  ]);
  return { outcome, within: Date.now() - started < ENDED_BY_ITSELF_MS };
}

/** A raw connection: what the server sent, and when it closed the connection. */
function connect(
  port: number,
): Promise<{ socket: net.Socket; received(): string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const closed = new Promise<void>((done) => socket.on('close', () => done()));
    socket.once('connect', () => resolve({ socket, received: () => text, closed }));
    socket.once('error', reject);
  });
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('When the listener closes while a keep-alive request is in flight, then the answer says Connection: close and the drain ends once it is answered', async () => {
  const { server, port, slowBegun } = await start();
  const agent = new http.Agent({ keepAlive: true });
  try {
    const answered = new Promise<string | undefined>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/slow', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.headers.connection));
        })
        .on('error', reject);
    });
    // In flight: the app has it (a fixed pause could close the listener before a loaded
    // machine even connected).
    await slowBegun;
    const started = Date.now();
    const drained = closeServer(server, DRAIN_MS);
    expect(await answered).toBe('close');
    expect(await drainEnds(drained, started)).toEqual({ outcome: true, within: true });
  } finally {
    agent.destroy();
  }
});

test('When the listener closes while an answer already begun on a keep-alive connection is still being sent, then the connection ends once it is complete and so does the drain', async () => {
  const { server, port } = await start();
  const client = await connect(port);
  client.socket.write('GET /streamed HTTP/1.1\r\nHost: x\r\n\r\n');
  // Until the answer has begun: a fixed pause can run out first on a loaded machine (timers
  // run before waiting sockets are read).
  await eventually(() => client.received().includes('begun;'), 'the answer begun');
  expect(client.received()).toMatch(/^HTTP\/1\.1 200 .*Connection: keep-alive.*begun;/s);

  const started = Date.now();
  const drained = closeServer(server, DRAIN_MS);
  expect(await drainEnds(drained, started)).toEqual({ outcome: true, within: true });
  await client.closed;
  expect(client.received()).toMatch(/begun;.*ended/s);
});

test('When the listener closes while a request on a keep-alive connection is still arriving, then its answer says Connection: close and the drain ends once it is answered', async () => {
  const { server, port } = await start();
  const client = await connect(port);
  client.socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n');
  await pause(100);

  const started = Date.now();
  const drained = closeServer(server, DRAIN_MS);
  await pause(100);
  client.socket.write('\r\n');
  expect(await drainEnds(drained, started)).toEqual({ outcome: true, within: true });
  await client.closed;
  expect(client.received()).toMatch(/^HTTP\/1\.1 200 .*Connection: close.*"ok":true/s);
});
