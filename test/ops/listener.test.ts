import type { Server } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import express from 'express';
import {
  HEADERS_TIMEOUT_MS,
  REQUEST_TIMEOUT_MS,
  bindAddresses,
  createListener,
  listenOn,
  listenerSettings,
} from '../../src/http/listener';
import type { ListenerSettings } from '../../src/http/listener';
import { testConfig } from '../helpers/test-app';

/**
 * The listeners' connection handling through real sockets (src/http/listener.ts), with small
 * values so that each behaviour shows within a second or two. What is asserted is which
 * limit acts on which connection, never how fast: every wait for the server to act is an
 * "eventually" with a generous limit.
 */

const small: ListenerSettings = {
  headersTimeoutMs: 300,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 60_000,
  maxConnections: 100,
  timeoutCheckIntervalMs: 50,
  maxOwedAnswers: 32,
  maxBodyPieces: 64,
  stalledTimeoutMs: 120_000,
  idleToFreeMs: 5_000,
  sendTimeoutMs: 20_000,
  maxUnflushedBytes: 64 * 1024,
};

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function start(
  settings: ListenerSettings,
  onRequest?: (req: express.Request) => void,
): Promise<number> {
  const app = express();
  if (onRequest) app.use((req, _res, next) => (onRequest(req), next()));
  app.post('/', express.raw({ type: () => true }), (_req, res) => void res.end('posted'));
  app.get('/', (_req, res) => void res.end('ok'));
  // An answer that takes a while: its request is whole, the connection is owed an answer.
  app.get('/slow', (_req, res) => void setTimeout(() => res.end('slow'), 1_500));
  const server = createListener(app, settings);
  servers.push(server);
  await listenOn(server, 0, ['127.0.0.1']);
  return (server.address() as AddressInfo).port;
}

interface Client {
  socket: net.Socket;
  /** Everything the server sent so far. */
  received(): string;
  closed: Promise<void>;
}

function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('error', () => undefined); // a reset is one of the outcomes looked at
    const closed = new Promise<void>((done) => socket.on('close', () => done()));
    socket.once('connect', () => resolve({ socket, received: () => text, closed }));
    socket.once('error', reject);
  });
}

const GET = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(check: () => boolean, what: string, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`still waiting for: ${what}`);
    await pause(20);
  }
}

function responses(text: string): string[] {
  return text.match(/HTTP\/1\.1 \d{3}/g) ?? [];
}

/** The error code of a raw answer in the service's JSON shape (DESIGN §2), else null. */
function errorCode(text: string): string | null {
  const [head, body] = text.split('\r\n\r\n');
  if (!/content-type: application\/json/i.test(head ?? '')) return null;
  const parsed = JSON.parse(body ?? '') as { error: { code: string; request_id: string } };
  expect(parsed.error.request_id).toMatch(/^[0-9a-f-]{36}$/);
  return parsed.error.code;
}

test('When a client trickles its headers, then it is answered 408 and cut at headersTimeout', async () => {
  const port = await start(small);
  const client = await connect(port);
  client.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
  // Another header line every 100 ms: the client never stops sending, it just never ends.
  const trickle = setInterval(() => {
    if (!client.socket.destroyed) client.socket.write('X-Slow: 1\r\n');
  }, 100);
  try {
    await client.closed; // requestTimeout is a minute: only headersTimeout can have cut it
  } finally {
    clearInterval(trickle);
  }
  expect(responses(client.received())).toEqual(['HTTP/1.1 408']);
  expect(errorCode(client.received())).toBe('request_timeout');
});

test('When a client sends its headers and trickles its body, then requestTimeout cuts it', async () => {
  // Node requires headersTimeout ≤ requestTimeout; the headers here are complete at once.
  const port = await start({ ...small, headersTimeoutMs: 500, requestTimeoutMs: 800 });
  const client = await connect(port);
  client.socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n');
  const trickle = setInterval(() => {
    if (!client.socket.destroyed) client.socket.write('a');
  }, 100);
  try {
    await client.closed;
  } finally {
    clearInterval(trickle);
  }
  expect(responses(client.received())).toEqual(['HTTP/1.1 408']);
});

test.each([
  [
    'a malformed Content-Length',
    'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n',
    'HTTP/1.1 400',
    'malformed_request',
  ],
  [
    'a header line that is not one',
    'GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n',
    'HTTP/1.1 400',
    'malformed_request',
  ],
  [
    'headers over Node’s 16 KiB',
    `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    'HTTP/1.1 431',
    'headers_too_large',
  ],
])(
  'When a request has %s, then the parser’s refusal is answered in the JSON error shape and the connection closed',
  async (_what, request, status, code) => {
    const port = await start(small);
    const client = await connect(port);
    client.socket.write(request);
    await client.closed;
    expect(responses(client.received())).toEqual([status]);
    expect(errorCode(client.received())).toBe(code);
  },
);

test('When an HTTP/1.0 request carries Transfer-Encoding, then it is refused as faulty framing, nothing of it or after it reaches the app, and the connection is closed', async () => {
  const heard: string[] = [];
  const port = await start(small, (req) => heard.push(`${req.method} ${req.url}`));
  const client = await connect(port);
  // RFC 9112 §6.1: such framing is faulty. A proxy in front that reads the body as HTTP/1.0
  // does (to the close) would take the GET below as body; read as chunked, it is a request.
  client.socket.write(
    'POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '3\r\na=b\r\n0\r\n\r\n' +
      'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n',
  );
  await client.closed;
  expect(responses(client.received())).toEqual(['HTTP/1.1 400']);
  expect(errorCode(client.received())).toBe('malformed_request');
  expect(heard).toEqual([]);
});

test.each([
  ['two Host lines', 'Host: a.example\r\nHost: b.example\r\n'],
  ['two Host lines in other cases', 'host: a.example\r\nHOST: a.example\r\n'],
])(
  'When a request carries %s, then it is refused 400 without reaching the app, and the connection closed',
  async (_what, hosts) => {
    const heard: string[] = [];
    const port = await start(small, (req) => heard.push(`${req.method} ${req.url}`));
    const client = await connect(port);
    // RFC 9112 §3.2: a proxy in front may have routed by either; the service cannot tell.
    client.socket.write(
      `GET /first HTTP/1.1\r\n${hosts}\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    await client.closed;
    expect(responses(client.received())).toEqual(['HTTP/1.1 400']);
    expect(errorCode(client.received())).toBe('malformed_request');
    expect(heard).toEqual([]);
  },
);

test('When a request carries one Host line among many headers, then it reaches the app', async () => {
  const heard: string[] = [];
  const port = await start(small, (req) => heard.push(`${req.method} ${req.url}`));
  const client = await connect(port);
  client.socket.write(
    'GET / HTTP/1.1\r\nX-Host: a\r\nHost: x\r\nHosts: b\r\nConnection: close\r\n\r\n',
  );
  await client.closed;
  expect(responses(client.received())).toEqual(['HTTP/1.1 200']);
  expect(heard).toEqual(['GET /']);
});

test.each(['gzip, chunked', 'identity, chunked', 'x-custom, chunked'])(
  'When a request’s Transfer-Encoding is %s, then it is answered 501 without reaching the app, and the connection closed',
  async (coding) => {
    const heard: string[] = [];
    const port = await start(small, (req) => heard.push(`${req.method} ${req.url}`));
    const client = await connect(port);
    // Node decodes only the chunked framing and would hand the app the bytes still encoded.
    client.socket.write(
      `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ${coding}\r\n\r\n3\r\na=b\r\n0\r\n\r\n`,
    );
    await client.closed;
    expect(responses(client.received())).toEqual(['HTTP/1.1 501']);
    expect(errorCode(client.received())).toBe('unsupported_transfer_encoding');
    expect(heard).toEqual([]);
  },
);

test('When a request with a faulty transfer coding follows a pipelined request still owed its answer, then that answer is written first and the refusal after it', async () => {
  const heard: string[] = [];
  const port = await start(small, (req) => heard.push(`${req.method} ${req.url}`));
  const client = await connect(port);
  client.socket.write(
    'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n' +
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\na=b\r\n0\r\n\r\n',
  );
  await client.closed;
  // Bytes written at once would be read as the answer to GET /slow: its answer first, then the
  // refusal, then the connection closed; the refused request never reached the app.
  expect(responses(client.received())).toEqual(['HTTP/1.1 200', 'HTTP/1.1 501']);
  expect(heard).toEqual(['GET /slow']);
});

test('When a keep-alive connection idles longer than headersTimeout, then it is kept (keepAliveTimeout governs it) and closed once that passes', async () => {
  const port = await start({ ...small, keepAliveTimeoutMs: 4_000 });
  const client = await connect(port);
  client.socket.write(GET);
  await waitFor(() => responses(client.received()).length === 1, 'the first answer');
  // Idle for five times headersTimeout (and its checks): the connection must still serve.
  await pause(1_500);
  expect(client.socket.destroyed).toBe(false);
  client.socket.write(GET);
  await waitFor(() => responses(client.received()).length === 2, 'the second answer');
  expect(responses(client.received())).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
  // Then, idle past keepAliveTimeout, the server closes it.
  await client.closed;
});

test('When the connection bound is reached, then further connections are closed at once and served again once one closes', async () => {
  const port = await start({ ...small, maxConnections: 2 });
  const first = await connect(port);
  const second = await connect(port);
  first.socket.write(GET);
  second.socket.write(GET);
  await waitFor(() => responses(first.received() + second.received()).length === 2, 'both served');
  const third = await connect(port);
  third.socket.write(GET);
  await third.closed;
  expect(third.received()).toBe('');

  first.socket.destroy();
  await first.closed;
  // The server counts the closed connection out once it sees the close.
  await pause(100);
  const fourth = await connect(port);
  fourth.socket.write(GET);
  await waitFor(() => responses(fourth.received()).length === 1, 'the fourth served');
  fourth.socket.destroy();
  second.socket.destroy();
});

test('When idle keep-alive connections hold every slot, then a refused connection has them closed, and the next one is served', async () => {
  const port = await start({ ...small, maxConnections: 2, idleToFreeMs: 200 });
  const idle = [await connect(port), await connect(port)];
  for (const client of idle) client.socket.write(GET);
  await waitFor(() => idle.every((c) => responses(c.received()).length === 1), 'both served');
  await pause(300); // idle for longer than idleToFreeMs
  const refused = await connect(port);
  await refused.closed;
  // Nobody leaves of their own accord: the server closes the idle ones.
  await Promise.all(idle.map((client) => client.closed));
  const next = await connect(port);
  next.socket.write(GET);
  await waitFor(() => responses(next.received()).length === 1, 'the next served');
  next.socket.destroy();
});

test('When connections stalled in their request bodies hold every slot, then a refused connection has them closed, but not one waiting for its answer', async () => {
  const port = await start({ ...small, maxConnections: 3, idleToFreeMs: 200 });
  // Whole headers, then 2 of the 100 bytes declared: the app is reading a body that never
  // comes, so an answer is owed until requestTimeout (30 s in the service).
  const stalled = [await connect(port), await connect(port)];
  for (const client of stalled) {
    client.socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab');
  }
  // A whole request whose answer takes a while: not stalled, whatever its age.
  const waiting = await connect(port);
  waiting.socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
  await pause(300); // longer than idleToFreeMs
  const refused = await connect(port);
  await refused.closed;
  let closed = 0;
  for (const client of stalled) void client.closed.then(() => closed++);
  await waitFor(() => closed === stalled.length, 'the stalled connections closed', 5_000);
  const next = await connect(port);
  next.socket.write(GET);
  await waitFor(() => responses(next.received()).length === 1, 'the next served');
  await waitFor(() => responses(waiting.received()).length === 1, 'the slow answer');
  expect(waiting.received()).toMatch(/slow$/);
  expect(waiting.socket.destroyed).toBe(false);
  next.socket.destroy();
  waiting.socket.destroy();
});

test('When a flood holds the other slots and keeps connecting, then a busy keep-alive client’s connection is not closed under it', async () => {
  const port = await start({
    ...small,
    headersTimeoutMs: 60_000,
    maxConnections: 4,
    // The service's own (5 s): the busy client is idle for milliseconds, so any threshold
    // above that tells it apart; a shorter one only adds a way to fail on a loaded machine
    // (the test's own event loop held up for a second made the busy client look idle).
    idleToFreeMs: 5_000,
  });
  const busy = await connect(port);
  // Three connections that never finish their headers, then a new connection every 10 ms.
  const flood: Client[] = [];
  for (let i = 0; i < 3; i++) {
    const client = await connect(port);
    client.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
    flood.push(client);
  }
  let flooding = true;
  const attempts = (async () => {
    while (flooding) {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n'));
      flood.push({ socket, received: () => '', closed: Promise.resolve() });
      await pause(10);
    }
  })();
  try {
    // A request every 20 ms for 2.5 s, each waiting for its answer: idle for milliseconds only.
    for (let n = 1; n <= 100; n++) {
      busy.socket.write(GET);
      await waitFor(
        () => responses(busy.received()).length === n || busy.socket.destroyed,
        'an answer or the connection closed',
        5_000,
      );
      expect(busy.socket.destroyed).toBe(false);
      await pause(20);
    }
    expect(responses(busy.received())).toHaveLength(100);
  } finally {
    flooding = false;
    await attempts;
    for (const client of [busy, ...flood]) client.socket.destroy();
  }
}, 30_000);

test('When the service builds its listeners, then the public timeouts are within DESIGN §2 and keep-alive outlasts the load balancer’s 60 s', () => {
  const settings = listenerSettings(testConfig());
  expect(settings.headersTimeoutMs).toBeLessThanOrEqual(10_000);
  expect(settings.requestTimeoutMs).toBeLessThanOrEqual(30_000);
  expect(settings.keepAliveTimeoutMs).toBeGreaterThan(60_000);
  expect(settings.maxConnections).toBeGreaterThan(0);
  expect(settings.timeoutCheckIntervalMs).toBeLessThanOrEqual(1_000);

  const server = createListener(express(), settings);
  expect(server).toMatchObject({
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: 65_000,
  });
  // The limit is the listener's own (admitConnections), decided between peers as a connection
  // arrives: Node's maxConnections would drop newcomers whoever holds the other slots.
  expect(server.maxConnections).toBeUndefined();
  const tuned = listenerSettings(
    testConfig({
      HTTP_KEEP_ALIVE_TIMEOUT_MS: '620000',
      HTTP_MAX_CONNECTIONS: '10',
      SIGNALWIRE_TIMEOUT_MS: '400000',
    }),
  );
  expect(tuned).toMatchObject({ keepAliveTimeoutMs: 620_000, maxConnections: 10 });
  // Nothing-moves cut-off: after keep-alive's, and past any wait of the service's own.
  expect(server.timeout).toBe(120_000);
  expect(tuned.stalledTimeoutMs).toBeGreaterThan(620_000);
  // A send through the proxy: an Application read, a second one with the project's own token
  // when the caller's was refused it, and the create, each up to the timeout.
  expect(tuned.stalledTimeoutMs).toBeGreaterThan(3 * 400_000);
});

describe('a body in tiny pieces', () => {
  /** A chunked POST of `pieces` chunks of one byte each (6 bytes each on the wire). */
  function chunkedPost(pieces: number): string {
    return (
      'POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '1\r\nx\r\n'.repeat(pieces) +
      '0\r\n\r\n'
    );
  }

  async function startCounting(): Promise<{ port: number; piecesHeard: () => number }> {
    let heard = 0;
    const app = express().post('/count', (req, res) => {
      req.on('data', () => heard++);
      req.on('end', () => res.end('posted'));
      req.on('error', () => undefined);
    });
    const server = createListener(app, small);
    servers.push(server);
    await listenOn(server, 0, ['127.0.0.1']);
    return { port: (server.address() as AddressInfo).port, piecesHeard: () => heard };
  }

  test('When a body comes in 64 KiB of 1-byte chunks, then 400 body_too_fragmented, the connection is closed, and the app hears no more than the limit of pieces', async () => {
    // Node hands each chunk to JavaScript on its own: such a body held the event loop for
    // every socket read of it (1.5 s of CPU for 256 KiB through the send proxy).
    const { port, piecesHeard } = await startCounting();
    const client = await connect(port);
    client.socket.write(chunkedPost(64 * 1024));
    await waitFor(() => responses(client.received()).length > 0, 'an answer');
    expect(responses(client.received())).toEqual(['HTTP/1.1 400']);
    expect(errorCode(client.received())).toBe('body_too_fragmented');
    await client.closed;
    expect(piecesHeard()).toBeLessThanOrEqual(small.maxBodyPieces);
  });

  /**
   * A client whose chunked POST the app refused (401) before reading its body, the body not
   * sent yet; the app serves `GET /` behind it on the same connection.
   */
  async function refusedBeforeItsBody(): Promise<Awaited<ReturnType<typeof connect>>> {
    const app = express();
    app.post('/refuse', (_req, res) => void res.status(401).end('no'));
    app.get('/', (_req, res) => void res.end('ok'));
    const server = createListener(app, small);
    servers.push(server);
    await listenOn(server, 0, ['127.0.0.1']);
    const client = await connect((server.address() as AddressInfo).port);
    client.socket.write('POST /refuse HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    await waitFor(() => responses(client.received()).length > 0, 'the refusal');
    return client;
  }

  test('When the app answers before reading a body in tiny pieces (a refusal), then the pieces Node discards after the answer count too: the connection is cut', async () => {
    // A refusal (401 without credentials, 413, 415) is answered before the body is read; Node
    // then discards the rest of the body (req._dump), each piece still handed to JavaScript.
    const client = await refusedBeforeItsBody();
    let closed = false;
    void client.closed.then(() => (closed = true));
    // Far more pieces than the limit, then a request behind them on the same connection.
    client.socket.write('1\r\nx\r\n'.repeat(64 * 1024) + '0\r\n\r\n' + GET);
    await waitFor(
      () => closed || responses(client.received()).length > 1,
      'the connection cut, or an answer to the request behind the body',
    );
    expect(responses(client.received())).toEqual(['HTTP/1.1 401']);
    expect(closed).toBe(true);
  });

  test('When the app answers before reading a body within the limit of pieces, then the rest is discarded and the connection serves the next request', async () => {
    const client = await refusedBeforeItsBody();
    client.socket.write('1\r\nx\r\n'.repeat(small.maxBodyPieces) + '0\r\n\r\n' + GET);
    await waitFor(() => responses(client.received()).length > 1, 'the next answer');
    expect(responses(client.received())).toEqual(['HTTP/1.1 401', 'HTTP/1.1 200']);
    client.socket.destroy();
  });

  test('When a chunked body comes within the limit of pieces, then the app reads it whole', async () => {
    const { port, piecesHeard } = await startCounting();
    const client = await connect(port);
    client.socket.write(chunkedPost(small.maxBodyPieces));
    await waitFor(() => client.received().includes('posted'), 'the answer');
    expect(responses(client.received())).toEqual(['HTTP/1.1 200']);
    expect(piecesHeard()).toBe(small.maxBodyPieces);
    client.socket.destroy();
  });
});

describe('a client that does not read its answers', () => {
  test('When a client pipelines thousands of requests and never reads, then it is cut once 32 answers are owed, and the app hears no more', async () => {
    let heard = 0;
    const app = express().get('/', (_req, res) => {
      heard++;
      res.end('ok');
    });
    const server = createListener(app, small);
    servers.push(server);
    await listenOn(server, 0, ['127.0.0.1']);
    const { port } = server.address() as AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause(); // never reads
    socket.write(GET.repeat(5_000));
    const connections = () =>
      new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n)));
    const deadline = Date.now() + 20_000;
    while ((await connections()) > 0 && Date.now() < deadline) await pause(20);
    expect(await connections()).toBe(0);
    // Node reads ~1,600 of these requests at once and answered them all, keeping every answer
    // until the client read it.
    expect(heard).toBeLessThanOrEqual(32);
    socket.destroy();
  });

  test('When pipelined requests are answered as the client reads, then the connection serves them all', async () => {
    const port = await start(small);
    const client = await connect(port);
    for (let round = 0; round < 5; round++) {
      client.socket.write(GET.repeat(20));
      await waitFor(() => responses(client.received()).length === (round + 1) * 20, 'answers');
    }
    expect(client.socket.destroyed).toBe(false);
    client.socket.destroy();
  });

  test('When an answer is never read and nothing moves for stalledTimeoutMs, then the connection is cut', async () => {
    const app = express().get('/', (_req, res) => void res.end(Buffer.alloc(16 * 1024 * 1024)));
    const server = createListener(app, { ...small, stalledTimeoutMs: 1_000 });
    servers.push(server);
    await listenOn(server, 0, ['127.0.0.1']);
    const { port } = server.address() as AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause();
    socket.write(GET);
    const connections = () =>
      new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n)));
    const deadline = Date.now() + 20_000;
    while ((await connections()) > 0 && Date.now() < deadline) await pause(50);
    expect(await connections()).toBe(0);
    socket.destroy();
    await closed;
  });
});

describe('HOST', () => {
  test('When HOST is `::` (the default), then IPv4 is the fallback; another HOST is used as given', () => {
    expect(testConfig().host).toBe('::');
    expect(bindAddresses('::')).toEqual(['::', '0.0.0.0']);
    expect(bindAddresses('127.0.0.1')).toEqual(['127.0.0.1']);
  });

  test('When the first address does not exist on the machine, then the next one is listened on', async () => {
    // 2001:db8::/32 is for documentation: no machine has it, binding it fails EADDRNOTAVAIL
    // as `::` does on a machine without IPv6.
    const server = createListener(
      express().get('/', (_req, res) => void res.end('ok')),
      small,
    );
    servers.push(server);
    await listenOn(server, 0, ['2001:db8::1', '127.0.0.1']);
    const { address, port } = server.address() as AddressInfo;
    expect(address).toBe('127.0.0.1');
    const client = await connect(port);
    client.socket.write(GET);
    await waitFor(() => responses(client.received()).length === 1, 'an answer');
    client.socket.destroy();
  });

  test('When the port is taken, then the error is not mistaken for a missing address', async () => {
    const port = await start(small);
    const second = createListener(express(), small);
    await expect(listenOn(second, port, ['127.0.0.1', '0.0.0.0'])).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
  });

  test('When listening on `::`, then IPv4 clients are served too (dual stack)', async () => {
    const server = createListener(
      express().get('/', (_req, res) => void res.end('ok')),
      small,
    );
    servers.push(server);
    await listenOn(server, 0, bindAddresses('::'));
    const { port } = server.address() as AddressInfo;
    const client = await connect(port);
    client.socket.write(GET);
    await waitFor(() => responses(client.received()).length === 1, 'an answer over IPv4');
    client.socket.destroy();
  });
});
