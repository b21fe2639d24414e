import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { signJsonBody } from '../../src/signalwire/signing';
import { nativeFields } from '../helpers/callbacks';
import { eventually } from '../helpers/eventually';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import {
  freePort,
  isListening,
  postSignedCallback,
  serviceEnv,
  startService,
} from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * SIGTERM to the real process while callbacks stream in over real sockets: readiness fails
 * first, the process keeps serving for SHUTDOWN_DELAY_MS, then stops accepting connections,
 * lets in-flight requests finish (up to SHUTDOWN_DRAIN_MS), commits what it acknowledged and
 * exits 0.
 */

const SHUTDOWN_DELAY_MS = 1500;
const SPOOL_DIR = path.join(os.tmpdir(), `sw-status-shutdown-test-${randomUUID()}`);

let database: TestDatabase;
const services: ServiceProcess[] = [];

beforeAll(async () => {
  database = await createTestDatabase(2);
});

afterAll(async () => {
  await Promise.all(services.map((service) => service.kill()));
  await database.destroy();
  await rm(SPOOL_DIR, { recursive: true, force: true });
});

interface Running {
  service: ServiceProcess;
  publicPort: number;
  internalPort: number;
}

/** The service on this file's database and fresh ports, once it listens. */
async function launch(env: Record<string, string>): Promise<Running> {
  const publicPort = await freePort();
  const internalPort = await freePort();
  const service = startService(
    serviceEnv(database.url, {
      PORT: String(publicPort),
      INTERNAL_PORT: String(internalPort),
      SPOOL_DIR: path.join(SPOOL_DIR, randomUUID()),
      ...env,
    }),
  );
  services.push(service);
  await service.waitForLog('sw-status listening', 30_000);
  return { service, publicPort, internalPort };
}

const getReadiness = (port: number): Promise<number> => getStatus(port, '/readyz');
const getHealth = (port: number): Promise<number> => getStatus(port, '/healthz');

function getStatus(port: number, route: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: route, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', reject);
  });
}

/**
 * A callback whose body arrives in two parts: the request is in flight (headers read, body
 * pending) while the listeners close. Resolves with the raw HTTP response.
 */
function slowCallback(port: number, id: string): { finish: () => void; response: Promise<string> } {
  const body = JSON.stringify(nativeFields({ id, status: 'delivered' }));
  const signature = signJsonBody(
    TEST_SIGNING_KEY,
    `${TEST_PUBLIC_BASE_URL}/callbacks/native`,
    body,
  );
  const socket = net.connect(port, '127.0.0.1');
  const half = Math.floor(body.length / 2);
  socket.write(
    `POST /callbacks/native HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nX-SignalWire-Signature: ${signature}\r\n\r\n` +
      body.slice(0, half),
  );
  const response = new Promise<string>((resolve, reject) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
  });
  return { finish: () => socket.write(body.slice(half)), response };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('When SIGTERM arrives mid-stream, then readiness fails first, in-flight requests finish, every acknowledged callback is stored and the process exits 0', async () => {
  const {
    service: svc,
    publicPort,
    internalPort,
  } = await launch({
    SHUTDOWN_DELAY_MS: String(SHUTDOWN_DELAY_MS),
    SHUTDOWN_DRAIN_MS: '10000',
  });
  const acked: string[] = [];
  const ackedWhileDraining: string[] = [];
  const connectionHeaders = new Set<string | undefined>();
  const connectionHeadersBefore = new Set<string | undefined>();
  // Keep-alive clients, like SignalWire's: connections are reused until told otherwise.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  let draining = false;
  let stop = false;

  // Four clients sending callbacks back to back until the service stops answering.
  const stream = async (): Promise<void> => {
    while (!stop) {
      const id = randomUUID();
      // Sent after the process logged that it is draining (answers to earlier requests may
      // still be on their way).
      const sentWhileDraining = draining;
      try {
        const reply = await postSignedCallback(publicPort, id, agent);
        if (reply.status === 200) {
          acked.push(id);
          if (sentWhileDraining) {
            ackedWhileDraining.push(id);
            connectionHeaders.add(reply.connection);
          } else {
            connectionHeadersBefore.add(reply.connection);
          }
        }
      } catch {
        return; // connection refused: the listener is closed
      }
    }
  };
  const clients = Promise.all([stream(), stream(), stream(), stream()]);

  // Readiness as the kubelet would poll it.
  const readiness: number[] = [];
  const polling = (async () => {
    for (;;) {
      try {
        readiness.push(await getReadiness(internalPort));
      } catch {
        return;
      }
      await sleep(50);
    }
  })();

  // Serving and ready (the first readiness check opens the pool's first connection: on a
  // loaded machine it may answer 503 before the 200s).
  await eventually(() => acked.length > 0 && readiness.includes(200), 'callbacks acked, ready');

  const beforeSignal = readiness.length;
  svc.child.kill('SIGTERM');
  await svc.waitForLog('shutting down: readiness off', 5_000);
  draining = true;
  // Readiness turns 503 while the process still serves: the endpoints have time to update.
  // (Only the answers from the signal on: a 503 of the start is not the one meant here.)
  const afterSignal = () => readiness.slice(beforeSignal);
  await eventually(() => afterSignal().includes(503), 'readiness 503 after SIGTERM', 5_000);
  expect(afterSignal().slice(afterSignal().indexOf(503))).not.toContain(200);

  // A request that is still arriving when the listeners close.
  const slowId = randomUUID();
  const slow = slowCallback(publicPort, slowId);
  await svc.waitForLog('closing listeners, draining requests', SHUTDOWN_DELAY_MS + 5_000);
  await sleep(300);
  expect(await isListening(publicPort)).toBe(false);
  slow.finish();
  expect(await slow.response).toMatch(/^HTTP\/1\.1 200 /);

  const { code, signal } = await svc.exited;
  stop = true;
  await Promise.all([clients, polling]);
  agent.destroy();

  expect({ code, signal, stderr: svc.stderr() }).toEqual({ code: 0, signal: null, stderr: '' });
  expect(ackedWhileDraining.length).toBeGreaterThan(0);
  // While draining, keep-alive clients are told to reconnect (to a replica still in the LB).
  expect([...connectionHeadersBefore]).toContain('keep-alive');
  expect([...connectionHeaders]).toEqual(['close']);
  expect(svc.stdout()).toContain('"msg":"stopped"');

  // Every callback answered 200 — the in-flight one included — is in the database.
  const ids = [...acked, slowId];
  const rows = await database.db
    .selectFrom('status_events')
    .select('message_id')
    .where('message_id', 'in', ids)
    .execute();
  expect(new Set(rows.map((row) => row.message_id))).toEqual(new Set(ids));
});

test('When an in-flight request outlasts SHUTDOWN_DRAIN_MS, then its connection is cut and the process still exits 0', async () => {
  const { service: svc, publicPort } = await launch({
    SHUTDOWN_DELAY_MS: '0',
    SHUTDOWN_DRAIN_MS: '500',
  });
  // A client that sends half a body and then nothing: without a deadline it would hold the
  // pod until Kubernetes kills it.
  const stuck = slowCallback(publicPort, randomUUID());
  // A request on another connection answered after it: the process has read the stuck one's
  // headers by then (one event loop), which a fixed pause does not prove on a loaded machine.
  expect(await getHealth(publicPort)).toBe(200);
  const signalled = Date.now();
  svc.child.kill('SIGTERM');

  const { code } = await svc.exited;
  expect(code).toBe(0);
  expect(Date.now() - signalled).toBeLessThan(5_000);
  expect(svc.stdout()).toContain('drain deadline passed');
  expect(await stuck.response).toBe('');
});
