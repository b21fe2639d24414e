import type { Server } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createListener, listenOn } from '../../src/http/listener';
import type { ListenerSettings } from '../../src/http/listener';

/**
 * A request the listener refuses for its framing or its body, pipelined behind one whose answer
 * is still owed (GET /slow) and followed by another (POST /after): the owed answer first, then
 * the refusal, then the connection closed — the refusal never in the owed answer's place, and
 * nothing read after the refused request handed to the app (for faulty framing that is the
 * request smuggling the refusal exists to stop). A body refused for too many pieces never looks
 * whole to the app, alone or pipelined.
 */

const SETTINGS: ListenerSettings = {
  headersTimeoutMs: 300,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 60_000,
  maxConnections: 100,
  timeoutCheckIntervalMs: 50,
  maxOwedAnswers: 32,
  maxBodyPieces: 8,
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

let heard: string[] = [];
async function start(): Promise<number> {
  heard = [];
  const app = express();
  app.use((req, _res, next) => {
    heard.push(`${req.method} ${req.url}`);
    next();
  });
  app.get('/slow', (_req, res) => void setTimeout(() => res.end('slow'), 800));
  app.get('/', (_req, res) => void res.end('ok'));
  app.post('/after', (_req, res) => void res.end('after'));
  app.post('/', express.raw({ type: () => true }), (req, res) => {
    heard.push(`body ${(req.body as Buffer).length}`);
    res.end('posted');
  });
  const server = createListener(app, SETTINGS);
  servers.push(server);
  await listenOn(server, 0, ['127.0.0.1']);
  return (server.address() as AddressInfo).port;
}

/** Writes each piece 30 ms apart; what came back by the time the connection closed. */
function exchange(port: number, pieces: string[]): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const socket = net.connect(port, '127.0.0.1', async () => {
      for (const piece of pieces) {
        socket.write(piece);
        await new Promise((r) => setTimeout(r, 30));
      }
    });
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(text));
    setTimeout(() => socket.destroy(), 10_000).unref();
  });
}

const statuses = (text: string) => text.match(/HTTP\/1\.1 \d{3}/g) ?? [];
const SLOW = 'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n';
const AFTER = 'POST /after HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n';
const GET = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
const REFUSED: Array<[string, string, string]> = [
  [
    'HTTP/1.0 with Transfer-Encoding',
    'POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n',
    'HTTP/1.1 400',
  ],
  [
    'a transfer coding besides chunked',
    'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n',
    'HTTP/1.1 501',
  ],
  [
    'a body in too many pieces',
    'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '1\r\nx\r\n'.repeat(20) +
      '0\r\n\r\n',
    'HTTP/1.1 400',
  ],
];

describe.each(REFUSED)('A request refused for %s', (_name, refused, refusal) => {
  test.each([
    ['in one write', [SLOW + refused + AFTER]],
    ['in three writes', [SLOW, refused, AFTER]],
  ])(
    'When it comes behind an owed answer and before another request (%s), then the owed answer, then its refusal, and nothing after it reaches the app',
    async (_how, pieces) => {
      const port = await start();
      const text = await exchange(port, pieces);
      expect(statuses(text)).toEqual(['HTTP/1.1 200', refusal]);
      expect(heard).not.toContain('POST /after');
      // A body cut short is never handed on as whole.
      expect(heard.filter((line) => line.startsWith('body'))).toEqual([]);
    },
  );

  test('When it comes first, then its refusal alone, and the app never sees its body whole', async () => {
    const port = await start();
    const text = await exchange(port, [refused + GET]);
    expect(statuses(text)).toEqual([refusal]);
    expect(heard.filter((line) => line.startsWith('body') || line === 'GET /')).toEqual([]);
  });
});
