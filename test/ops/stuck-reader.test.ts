import type { Server } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Config } from '../../src/config';
import { createListener, listenOn, listenerSettings } from '../../src/http/listener';
import type { ListenerSettings } from '../../src/http/listener';
import { eventually } from '../helpers/eventually';

/**
 * Connections owed answers the app has ended but the peer does not read (src/http/listener.ts
 * sendingStalledFor). Node counts such an answer owed until the socket has taken all of it, so
 * a client that asks and never reads held its slots as if the app were still working on them
 * — until stalledTimeoutMs (120 s), or for ever when it read a little now and then — and every
 * other peer (SignalWire's callbacks, the kubelet's probes) was refused when it held them all.
 *
 * The answers here are larger than what loopback's socket buffers take (some 4 MB), so that
 * a client that stops reading leaves most of one queued in the process, as a client with a
 * tiny receive window does with a public 404. The client that does not read connects from
 * 127.0.0.2, the newcomer from 127.0.0.1 (Linux routes all of 127/8 to the loopback).
 */

const BIG = Buffer.alloc(8 * 2 ** 20, 'x');
const STUCK = '127.0.0.2';
const OTHER = '127.0.0.1';

const settings: ListenerSettings = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 60_000,
  maxConnections: 100,
  timeoutCheckIntervalMs: 100,
  maxOwedAnswers: 32,
  maxBodyPieces: 64,
  stalledTimeoutMs: 120_000,
  idleToFreeMs: 500,
  // Out of the way unless a test sets them: each test looks at one limit.
  sendTimeoutMs: 60_000,
  maxUnflushedBytes: 1024 * 2 ** 20,
};

const servers: Server[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** `GET /big`: an 8 MiB answer, ended at once. `GET /slow`: answered after 3 s. `GET /`: ok. */
async function start(
  overrides: Partial<ListenerSettings>,
): Promise<{ port: number; open(): Promise<number> }> {
  const app = express();
  app.get('/big', (_req, res) => void res.end(BIG));
  app.get('/slow', (_req, res) => void setTimeout(() => res.end('slow'), 3_000));
  app.get('/', (_req, res) => void res.end('ok'));
  const server = createListener(app, { ...settings, ...overrides });
  servers.push(server);
  await listenOn(server, 0, ['127.0.0.1']);
  // Counted by the server: a client that does not read does not see its connection close.
  const open = () =>
    new Promise<number>((resolve, reject) =>
      server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
    );
  return { port: (server.address() as AddressInfo).port, open };
}

/** A connection from `from` that asks for `path` (`times` pipelined) and does not read the answers. */
function askWithoutReading(
  port: number,
  path: string,
  from = STUCK,
  times = 1,
): Promise<net.Socket> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.pause();
    socket.once('connect', () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(times));
      resolve(socket);
    });
  });
}

/** A request on a new connection from another peer: its status line, or how it ended. */
function ask(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: OTHER });
    sockets.push(socket);
    let got = '';
    socket.on('connect', () =>
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    );
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('close', () => resolve(got.split('\r\n')[0] || 'closed without an answer'));
    socket.on('error', () => undefined);
    socket.setTimeout(5_000, () => socket.destroy());
  });
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('When one peer holds every slot with answers it does not read, then another peer’s newcomer is served once they have made no progress for idleToFreeMs, and they are freed', async () => {
  const { port, open } = await start({ maxConnections: 4 });
  await Promise.all([1, 2, 3, 4].map(() => askWithoutReading(port, '/big')));
  await eventually(async () => (await open()) === 4, 'four connections');
  await pause(1_500); // past idleToFreeMs, and past the check of the slots' progress
  // Asked again while refused: a loaded machine can still be queueing the answers into the
  // sockets at 1.5 s, and their idleToFreeMs counts from when the sockets stopped taking them.
  // Before, the newcomer was refused until sendTimeoutMs (60 s here), or stalledTimeoutMs.
  const answers: string[] = [];
  await eventually(
    async () => answers[answers.push(await ask(port)) - 1] === 'HTTP/1.1 200 OK',
    'the newcomer served',
    15_000,
  ).catch(() => undefined);
  expect(answers.at(-1)).toBe('HTTP/1.1 200 OK');
  // Freed as idle connections are when the listener is full: all of them, not only one.
  await eventually(async () => (await open()) === 0, 'the four closed');
});

test('When one peer holds every slot with requests the app is still answering, then none of them is closed for a newcomer', async () => {
  const { port, open } = await start({ maxConnections: 4 });
  await Promise.all([1, 2, 3, 4].map(() => askWithoutReading(port, '/slow')));
  await eventually(async () => (await open()) === 4, 'four connections');
  await pause(1_000);
  expect(await ask(port)).toBe('closed without an answer');
  expect(await open()).toBe(4);
});

test('When a client stops reading an answer the app has ended, then its connection is cut after sendTimeoutMs without the listener being full', async () => {
  const { port, open } = await start({ sendTimeoutMs: 2_000 });
  await askWithoutReading(port, '/big');
  await pause(1_000);
  expect(await open()).toBe(1);
  await eventually(async () => (await open()) === 0, 'the connection cut', 6_000);
});

test('When more than maxUnflushedBytes of pipelined answers make no progress, then the connection is cut after idleToFreeMs, long before sendTimeoutMs', async () => {
  const { port, open } = await start({ maxUnflushedBytes: 64 * 1024 });
  await askWithoutReading(port, '/big', STUCK, 2);
  await eventually(async () => (await open()) === 1, 'the connection');
  await eventually(async () => (await open()) === 0, 'the connection cut', 5_000);
});

test('When a client reads a large answer slowly but keeps reading, then it gets all of it, though its socket takes nothing for a while at a time', async () => {
  // The kernel takes more of an answer only once half its send buffer is free (some 2 MB on
  // the loopback), so a client reading 1.3 MB/s leaves the socket taking nothing for ~1.5 s
  // at a time: the limits are above that, and the answer takes twice as long.
  const { port } = await start({
    maxConnections: 1,
    // Twice the gaps measured: a loaded machine fires the reader's timers late.
    sendTimeoutMs: 6_000,
    idleToFreeMs: 6_000,
    maxUnflushedBytes: 64 * 1024,
  });
  const reader = await askWithoutReading(port, '/big', OTHER);
  let closed = false;
  reader.on('close', () => (closed = true));
  let received = 0;
  // A pause of 50 ms after every read (64 KiB at most).
  reader.on('data', (chunk: Buffer) => {
    received += chunk.length;
    reader.pause();
    setTimeout(() => reader.resume(), 50);
  });
  const started = Date.now();
  reader.resume();
  await eventually(() => received > BIG.length || closed, 'the whole answer', 60_000);
  expect(received).toBeGreaterThan(BIG.length);
  expect(Date.now() - started).toBeGreaterThan(3_000);
}, 70_000);

test('When a reader of one large answer pauses 8 s, with the production settings, then it still gets all of it', async () => {
  const production = listenerSettings({
    httpKeepAliveTimeoutMs: 65_000,
    httpMaxConnections: 4_096,
    signalwireTimeoutMs: 10_000,
  } as Config);
  const app = express();
  app.get('/big', (_req, res) => void res.end(BIG));
  const server = createListener(app, production);
  servers.push(server);
  await listenOn(server, 0, ['127.0.0.1']);
  const reader = await askWithoutReading((server.address() as AddressInfo).port, '/big', OTHER);
  let closed = false;
  reader.on('close', () => (closed = true));
  let received = 0;
  // A pager, a GC pause, a dropout TCP rides out: 8 s without reading, after the first MiB.
  reader.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received > 2 ** 20 && received - chunk.length <= 2 ** 20) {
      reader.pause();
      setTimeout(() => reader.resume(), 8_000);
    }
  });
  reader.resume();
  await eventually(() => received > BIG.length || closed, 'the whole answer', 30_000);
  expect({ closed, complete: received > BIG.length }).toEqual({ closed: false, complete: true });
}, 40_000);
