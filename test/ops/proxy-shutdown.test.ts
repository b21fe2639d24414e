import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { freePort, serviceEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * SIGTERM while the send proxy waits for SignalWire's answer. SignalWire has the whole send by
 * then and will send the message: the caller must get its answer (and the message its record),
 * not a connection cut at SHUTDOWN_DRAIN_MS — its client would count the send as failed and
 * retry it. And a send that could not have its answer back before the shutdown must cut the
 * connections is not forwarded at all, but refused as not sent.
 */

jest.setTimeout(60_000);

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const SPOOL_DIR = path.join(os.tmpdir(), `sw-status-proxy-shutdown-${randomUUID()}`);
const UPSTREAM_ANSWERS_AFTER_MS = 1_500;

let database: TestDatabase;
let upstream: http.Server;
let upstreamPort: number;
const creates: string[] = [];
let createArrived: () => void = () => undefined;
const services: ServiceProcess[] = [];

beforeAll(async () => {
  database = await createTestDatabase(2);
  // SignalWire, slow to answer a create.
  upstream = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const sid = randomUUID();
      creates.push(sid);
      createArrived();
      setTimeout(() => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ sid, account_sid: PROJECT, status: 'queued', to: '+15557654321' }),
        );
      }, UPSTREAM_ANSWERS_AFTER_MS);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamPort = (upstream.address() as AddressInfo).port;
});

afterAll(async () => {
  await Promise.all(services.map((service) => service.kill()));
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
  await database.destroy();
  await rm(SPOOL_DIR, { recursive: true, force: true });
});

async function launch(env: Record<string, string>) {
  const internalPort = await freePort();
  const service = startService(
    serviceEnv(database.url, {
      PORT: String(await freePort()),
      INTERNAL_PORT: String(internalPort),
      SPOOL_DIR: path.join(SPOOL_DIR, randomUUID()),
      SIGNALWIRE_SPACE_URL: `http://127.0.0.1:${upstreamPort}`,
      SIGNALWIRE_TIMEOUT_MS: '5000',
      ...env,
    }),
  );
  services.push(service);
  await service.waitForLog('sw-status listening', 30_000);
  return { service, internalPort };
}

/** A compatibility create through the proxy: its status and body, or the error that ended it. */
function send(port: number): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`,
        agent: false,
        headers: {
          authorization: basicAuthHeader(PROJECT, 'PTshutdowntoken'),
          'content-type': 'application/x-www-form-urlencoded',
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', (error) => resolve({ error: error.message }));
    req.end(
      new URLSearchParams({ To: '+15557654321', From: '+15551234567', Body: 'x' }).toString(),
    );
  });
}

test('When SIGTERM arrives while SignalWire is answering a send, then its caller still gets the answer, past the drain, and the message is recorded', async () => {
  const { service, internalPort } = await launch({
    SHUTDOWN_DELAY_MS: '0',
    SHUTDOWN_DRAIN_MS: '300',
    SHUTDOWN_GRACE_MS: '20000',
  });
  const arrived = new Promise<void>((resolve) => (createArrived = resolve));
  const answer = send(internalPort);
  await arrived;
  service.child.kill('SIGTERM');

  const reply = await answer;
  expect(reply).toMatchObject({ status: 201 });
  const sid = (JSON.parse((reply as { body: string }).body) as { sid: string }).sid;
  expect((await service.exited).code).toBe(0);
  const { rows } = await database.pool.query('SELECT id FROM messages WHERE id = $1', [sid]);
  expect(rows).toHaveLength(1);
});

test('When a send comes in during the shutdown too late for its answer to be back before the connections are cut, then it is not forwarded: 503, not sent', async () => {
  const { service, internalPort } = await launch({
    // Still serving for 5 s after SIGTERM (the send must arrive in them: room for a loaded
    // machine between the log line and the request); the connections are cut 5 s after it at
    // the latest (the grace period less its reserves), sooner than SignalWire's 8 s timeout
    // from any moment of the shutdown.
    SHUTDOWN_DELAY_MS: '5000',
    SHUTDOWN_DRAIN_MS: '1000',
    SHUTDOWN_GRACE_MS: '8000',
    SIGNALWIRE_TIMEOUT_MS: '8000',
  });
  service.child.kill('SIGTERM');
  await service.waitForLog('shutting down: readiness off', 10_000);
  const before = creates.length;

  const reply = await send(internalPort);

  expect(reply).toMatchObject({ status: 503 });
  expect((reply as { body: string }).body).toMatch(/shutting down; the message was not sent/);
  expect(creates.length).toBe(before);
  expect((await service.exited).code).toBe(0);
});
