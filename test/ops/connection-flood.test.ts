import net from 'node:net';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createPublicApp } from '../../src/app';
import { createListener, listenOn, listenerSettings } from '../../src/http/listener';
import type { ListenerSettings } from '../../src/http/listener';
import { signFormParams } from '../../src/signalwire/signing';
import { cxmlFields } from '../helpers/callbacks';
import { eventually } from '../helpers/eventually';
import { createTestApp, TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Who gets a connection when the listener is full (HTTP_MAX_CONNECTIONS, src/http/listener.ts
 * admitConnections): the decision is made as the newcomer arrives, between it and the peer
 * holding the most connections. One anonymous client holding every slot — half-open
 * connections reconnected the instant one is cut, or keep-alive connections never idle long
 * enough to be freed — keeps them only against its own newcomers: SignalWire's signed
 * callbacks, each on a new connection from another address, still get in and are answered.
 * Yet one peer alone (a load balancer in front) may use every slot, and a connection whose
 * request awaits its answer is never the one closed to make room.
 *
 * The attacker connects from 127.0.0.2, SignalWire from 127.0.0.1 (Linux routes all of
 * 127/8 to the loopback): the listener tells peers apart by address, as the rate limit does.
 */
const MAX = 40;
const ATTACKER = '127.0.0.2';
const SIGNALWIRE = '127.0.0.1';
let t: TestApp;
let server: Server;
let port: number;
// The public listener as src/process/listen.ts starts it (listenerSettings of the config), with
// HTTP_MAX_CONNECTIONS small so that one anonymous client can reach it from a test.
beforeAll(async () => {
  t = await createTestApp({ HTTP_MAX_CONNECTIONS: String(MAX) });
  server = createListener(createPublicApp(t.deps), listenerSettings(t.config), t.deps.logger);
  await listenOn(server, 0, ['127.0.0.1']);
  port = (server.address() as AddressInfo).port;
});
const small: Server[] = [];
afterEach(async () => {
  for (const other of small.splice(0)) {
    other.closeAllConnections();
    await new Promise((r) => other.close(r));
  }
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await t.close();
});

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One signed cXML callback on a new connection, as SignalWire sends it: its status, or 0. */
function signedCallback(): Promise<number> {
  const fields = cxmlFields();
  const body = new URLSearchParams(fields).toString();
  const url = `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`;
  const signature = signFormParams(TEST_SIGNING_KEY, url, Object.entries(fields));
  const head =
    'POST /callbacks/cxml HTTP/1.1\r\nHost: hooks.example.com\r\n' +
    'Content-Type: application/x-www-form-urlencoded\r\n' +
    `X-SignalWire-Signature: ${signature}\r\nContent-Length: ${body.length}\r\n` +
    'Connection: close\r\n\r\n';
  return new Promise((resolve) => {
    let text = '';
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: SIGNALWIRE }, () =>
      socket.write(head + body),
    );
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    // SignalWire's read timeout (SIGNALWIRE.md "Delivery").
    socket.setTimeout(5_000, () => socket.destroy());
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
  });
}

test('When one anonymous client keeps HTTP_MAX_CONNECTIONS half-open connections (reconnecting as each is cut), then SignalWire’s signed callbacks are still acknowledged', async () => {
  let attacking = true;
  const sockets = new Set<net.Socket>();
  // Slowloris: a request line and nothing more; reconnect at once whenever the server cuts one.
  const open = (): void => {
    if (!attacking) return;
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: ATTACKER }, () =>
      socket.write('GET /healthz HTTP/1.1\r\n'),
    );
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      setImmediate(open);
    });
  };
  for (let i = 0; i < MAX; i++) open();
  await pause(500);

  // SignalWire: a callback a second for 15 s (each of its tries a new connection).
  const answers: number[] = [];
  for (let i = 0; i < 15; i++) {
    answers.push(await signedCallback());
    await pause(1_000);
  }
  attacking = false;
  for (const socket of sockets) socket.destroy();

  // Once the attack stops, the same callback is acknowledged.
  expect(await signedCallback()).toBe(200);
  // Under attack every try gets in: each takes a slot from the attacker at once.
  expect(answers).toEqual(answers.map(() => 200));
}, 60_000);

test('When one anonymous client keeps HTTP_MAX_CONNECTIONS keep-alive connections busy with a /healthz every 4 s, then SignalWire’s signed callbacks are still acknowledged', async () => {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < MAX; i++) {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: ATTACKER });
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    sockets.push(socket);
  }
  // One tiny request per connection every 4 s: under the 5 s after which a full listener
  // frees a connection, far under the public rate limit (health is not limited anyway).
  const poke = () => {
    for (const socket of sockets) {
      if (!socket.destroyed) socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    }
  };
  poke();
  const timer = setInterval(poke, 4_000);
  try {
    await pause(500);
    const answers: number[] = [];
    for (let i = 0; i < 12; i++) {
      answers.push(await signedCallback());
      await pause(1_000);
    }
    expect(answers).toEqual(answers.map(() => 200));
  } finally {
    clearInterval(timer);
    for (const socket of sockets) socket.destroy();
  }
}, 60_000);

// A listener of its own with a slow route, for what is never closed to make room.
const settings: ListenerSettings = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 60_000,
  maxConnections: 5,
  timeoutCheckIntervalMs: 1_000,
  maxOwedAnswers: 32,
  maxBodyPieces: 64,
  stalledTimeoutMs: 120_000,
  idleToFreeMs: 5_000,
  sendTimeoutMs: 20_000,
  maxUnflushedBytes: 64 * 1024,
};

async function startSmall(max: number): Promise<number> {
  const app = express();
  app.get('/', (_req, res) => void res.end('ok'));
  // An answer that takes a while: its request is whole, the connection awaits its answer.
  app.get('/slow', (_req, res) => void setTimeout(() => res.end('slow'), 3_000));
  const listener = createListener(app, { ...settings, maxConnections: max });
  small.push(listener);
  await listenOn(listener, 0, ['127.0.0.1']);
  return (listener.address() as AddressInfo).port;
}

interface Client {
  socket: net.Socket;
  /** Everything the server sent so far. */
  received(): string;
  closed: Promise<void>;
  isClosed(): boolean;
}

function connect(to: number, from: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port: to, host: '127.0.0.1', localAddress: from });
    let text = '';
    let closed = false;
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('error', () => undefined);
    const whenClosed = new Promise<void>((done) =>
      socket.on('close', () => {
        closed = true;
        done();
      }),
    );
    socket.once('connect', () =>
      resolve({ socket, received: () => text, closed: whenClosed, isClosed: () => closed }),
    );
    socket.once('error', reject);
  });
}

const GET = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
const answers = (client: Client) => client.received().match(/HTTP\/1\.1 \d{3}/g)?.length ?? 0;

test('When a single peer is the only one connecting, then it may hold every slot (no share per peer), and only its own connection past the limit is refused', async () => {
  const to = await startSmall(5);
  const clients: Client[] = [];
  for (let i = 0; i < 5; i++) clients.push(await connect(to, SIGNALWIRE));
  for (const client of clients) client.socket.write(GET);
  await eventually(() => clients.every((c) => answers(c) === 1), 'all five served');

  const sixth = await connect(to, SIGNALWIRE);
  sixth.socket.write(GET);
  await sixth.closed;
  expect(sixth.received()).toBe('');
  // Its own newcomer takes nothing from it: all five still open, and served again.
  for (const client of clients) client.socket.write(GET);
  await eventually(() => clients.every((c) => answers(c) === 2), 'all five served again');
  expect(clients.some((c) => c.isClosed())).toBe(false);
  for (const client of clients) client.socket.destroy();
});

test('When another peer’s newcomer needs a slot, then a connection awaiting its answer is never the one closed, though inactive longest', async () => {
  const to = await startSmall(3);
  // The heaviest peer: two requests whole and awaiting their answers (begun first, so inactive
  // longest), then a keep-alive connection answered and idle.
  const waiting = [await connect(to, ATTACKER), await connect(to, ATTACKER)];
  for (const client of waiting) client.socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
  await pause(100);
  const idle = await connect(to, ATTACKER);
  idle.socket.write(GET);
  await eventually(() => answers(idle) === 1, 'the idle one served');

  // The idle one makes room for the newcomer.
  const newcomer = await connect(to, SIGNALWIRE);
  newcomer.socket.write(GET);
  await eventually(() => answers(newcomer) === 1, 'the newcomer served');
  await idle.closed;

  // Now every connection of the heaviest peer awaits its answer: a newcomer is refused.
  const refused = await connect(to, '127.0.0.3');
  refused.socket.write(GET);
  await refused.closed;
  expect(refused.received()).toBe('');

  await eventually(() => waiting.every((c) => answers(c) === 1), 'the slow answers');
  for (const client of waiting) {
    expect(client.received()).toMatch(/slow$/);
    expect(client.isClosed()).toBe(false);
  }
  for (const client of [...waiting, newcomer]) client.socket.destroy();
}, 30_000);
