import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { Server as HttpsServer } from 'node:https';
import { request as httpRequest } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import type { AddressInfo, Server as TcpServer, Socket } from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from './support';
import type { Listening } from './support';

/**
 * The proxy's connection to SignalWire can take seconds to come up (a TLS handshake across a
 * congested path, a slow egress). Not one byte of the send has left until it is up, so a
 * client that gives up meanwhile, and will retry, must not have its send forwarded once the
 * connection is ready: SignalWire would send the message twice.
 *
 * Here SignalWire is a real TLS server behind a TCP hop that holds each new connection for
 * HOLD_MS before passing it on, so the handshake finishes only then.
 */

const HOLD_MS = 1_500;
const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTconnectingtoken');

let dir: string;
let signalwire: HttpsServer;
let hop: TcpServer;
const hopSockets: Socket[] = [];
let hopConnected: () => void = () => undefined;
let hopClosed: () => void = () => undefined;
const creates: string[] = [];
let t: TestApp;
let proxy: Listening;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sw-status-proxy-tls-'));
  await promisify(execFile)(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1'],
      ...['-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', 'key.pem', '-out', 'cert.pem'],
    ],
    { cwd: dir },
  );
  // The certificate is self-signed, and the client under test takes no CA of its own: its
  // connections (made by https through tls.connect) accept this one certificate.
  const cert = readFileSync(path.join(dir, 'cert.pem'));
  const tlsConnect = tls.connect.bind(tls) as (options: tls.ConnectionOptions) => tls.TLSSocket;
  jest
    .spyOn(tls, 'connect')
    .mockImplementation(((options: tls.ConnectionOptions) =>
      tlsConnect({ ...options, ca: cert })) as typeof tls.connect);
  signalwire = createHttpsServer(
    {
      key: readFileSync(path.join(dir, 'key.pem')),
      cert,
    },
    (req, res) => {
      req.resume();
      req.on('end', () => {
        creates.push(req.url ?? '');
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ sid: '0a059168-ead0-41af-9d1f-343dae832527', status: 'queued' }));
      });
    },
  );
  await new Promise<void>((resolve) => signalwire.listen(0, '127.0.0.1', resolve));
  const signalwirePort = (signalwire.address() as AddressInfo).port;

  hop = createTcpServer((client) => {
    hopSockets.push(client);
    client.pause();
    client.on('error', () => undefined);
    client.once('close', () => hopClosed());
    hopConnected();
    const passOn = setTimeout(() => {
      if (client.destroyed) return;
      const onward = connect(signalwirePort, '127.0.0.1', () => {
        client.pipe(onward);
        onward.pipe(client);
        client.resume();
      });
      onward.on('error', () => undefined);
      hopSockets.push(onward);
    }, HOLD_MS);
    client.once('close', () => clearTimeout(passOn));
  });
  await new Promise<void>((resolve) => hop.listen(0, '127.0.0.1', resolve));
  const hopPort = (hop.address() as AddressInfo).port;

  t = await createTestApp({ SIGNALWIRE_SPACE_URL: `https://127.0.0.1:${hopPort}` });
  proxy = await listen(t.internalApp);
});

afterAll(async () => {
  await proxy.close();
  await t.close();
  for (const socket of hopSockets) socket.destroy();
  await new Promise((resolve) => hop.close(resolve));
  signalwire.closeAllConnections();
  await new Promise((resolve) => signalwire.close(resolve));
  jest.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
});

test('When the caller goes away while the connection to SignalWire is still being set up, then the send is dropped unsent', async () => {
  const connecting = new Promise<void>((resolve) => (hopConnected = resolve));
  const dropped = new Promise<boolean>((resolve) => {
    hopClosed = () => resolve(true);
    // Past the hold and the handshake: by then a forwarded send would have arrived.
    setTimeout(() => resolve(false), HOLD_MS + 1_500).unref();
  });

  const req = httpRequest({
    host: '127.0.0.1',
    port: proxy.port,
    method: 'POST',
    path: `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`,
    headers: { authorization: AUTH, 'content-type': 'application/x-www-form-urlencoded' },
  });
  req.on('error', () => undefined);
  req.end(new URLSearchParams({ To: '+15557654321', From: '+15551234567', Body: 'x' }).toString());

  await connecting;
  // The client's own timeout fires: it closes the connection and will retry the send.
  req.destroy();

  const droppedAtOnce = await dropped;
  await new Promise((resolve) => setTimeout(resolve, HOLD_MS));
  expect(creates).toEqual([]);
  // The proxy gave up its half-open connection instead of finishing the handshake.
  expect(droppedAtOnce).toBe(true);
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM messages`.execute(
    t.database.db,
  );
  expect(rows[0]!.n).toBe(0);
});
