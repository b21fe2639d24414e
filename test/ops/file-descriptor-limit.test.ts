import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { signJsonBody } from '../../src/signalwire/signing';
import { nativeFields } from '../helpers/callbacks';
import { eventually } from '../helpers/eventually';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from '../helpers/test-app';
import { createTestDatabase, endSessions } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { postSignedCallback, productionEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * The real service under a low limit on open files (`prlimit --nofile`), as some runtimes set
 * it (systemd units, ECS tasks: 1024–4096; Kubernetes' usual limit is far higher), with one
 * peer holding idle keep-alive connections until no descriptor is left (found by a
 * resource-limits review):
 * - both listeners at the default HTTP_MAX_CONNECTIONS (4096 each) needed more descriptors than
 *   the process had, so accept() failed before the listener's own bound applied and libuv closed
 *   every newcomer — SignalWire's callbacks too — with nothing logged; each listener's bound is
 *   now lowered to fit the limit, with a warning (src/process/open-file-limit.ts);
 * - a new database connection failing with EMFILE was taken for the event's own fault (no
 *   SQLSTATE): every callback answered 503 and logged as refused for its data, and the query
 *   API answered 500; it is now the database being unavailable (src/db/database-unavailable.ts):
 *   callbacks spooled and acknowledged, reads 503 with Retry-After.
 */
jest.setTimeout(120_000);

const LIMIT = 120;
/**
 * Below what the service at rest (~30) and both listeners at their lowered bound (16 each)
 * take together: connections use up every descriptor.
 */
const TIGHT_LIMIT = 48;
let database: TestDatabase;
const services: ServiceProcess[] = [];
const spoolDirs: string[] = [];
const held: net.Socket[] = [];
const agents: http.Agent[] = [];

beforeAll(async () => {
  database = await createTestDatabase(1);
});
afterEach(() => {
  for (const socket of held.splice(0)) socket.destroy();
  for (const agent of agents.splice(0)) agent.destroy();
});
afterAll(async () => {
  for (const service of services) await service.kill();
  await database.destroy();
  for (const dir of spoolDirs) rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function startLimited(limit: number, extra: Record<string, string> = {}) {
  const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'sw-fd-limit-'));
  spoolDirs.push(spoolDir);
  const { port, env } = await productionEnv(database.url, spoolDir);
  const service = startService(
    { ...env, ...extra },
    { wrapper: ['prlimit', `--nofile=${limit}:${limit}`, '--'] },
  );
  services.push(service);
  await service.waitForLog('sw-status listening', 40_000);
  await service.waitForLog("change feed: listening for other replicas' commits", 20_000);
  return { service, port, env };
}

/**
 * One peer (127.0.0.1) opens connections, each answered and kept (keep-alive, owing nothing),
 * until the service closes one: no descriptor is left, or the listener's bound is reached.
 */
async function holdConnections(port: number): Promise<void> {
  let closedByServer = 0;
  for (let i = 0; i < LIMIT * 2 && closedByServer === 0; i++) {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.1' });
    socket.on('error', () => undefined);
    socket.on('close', () => closedByServer++);
    socket.on('connect', () => socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    socket.on('data', () => undefined);
    held.push(socket);
    await sleep(10);
  }
}

/**
 * Every descriptor taken while the service's pool holds none: connections held, then the
 * pool's sessions ended (an idle timeout, PgBouncer, a failover) and their descriptors taken by
 * the next connections in.
 */
async function exhaustDescriptors(ports: number[]): Promise<void> {
  for (const port of ports) await holdConnections(port);
  await endSessions(new URL(database.url).pathname.slice(1));
  await sleep(300);
  for (const port of ports) await holdConnections(port);
}

function callbackFrom(localAddress: string, port: number): Promise<number | string> {
  const body = JSON.stringify(nativeFields({ id: randomUUID(), status: 'delivered' }));
  const url = `${TEST_PUBLIC_BASE_URL}/callbacks/native`;
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        localAddress,
        method: 'POST',
        path: '/callbacks/native',
        agent: false,
        timeout: 5_000,
        headers: {
          'Content-Type': 'application/json',
          'X-SignalWire-Signature': signJsonBody(TEST_SIGNING_KEY, url, body),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error: NodeJS.ErrnoException) => resolve(`error ${error.code}`));
    req.end(body);
  });
}

function messages(msg: string, service: ServiceProcess): string[] {
  return service
    .stdout()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => (JSON.parse(line) as { msg: string }).msg)
    .filter((m) => m.includes(msg));
}

test('When one peer holds idle connections up to the open-file limit, then a callback from another peer is still answered 200, and the lowered bound is logged', async () => {
  const { service, port } = await startLimited(LIMIT);
  await holdConnections(port);
  await sleep(6_000); // past 5 s idle, a held connection may be closed to make room

  const statuses: Array<number | string> = [];
  for (let i = 0; i < 3; i++) statuses.push(await callbackFrom('127.0.0.2', port));

  expect(statuses).toEqual([200, 200, 200]);
  expect(messages('open files are limited to 120', service)).toHaveLength(2);
  expect(service.child.exitCode).toBeNull();
});

test('When the process has no descriptor left for a database connection, then callbacks are answered as in an outage — spooled and acknowledged, or 503 while the spool cannot open a file either — never refused for their data, and every acknowledged one is stored', async () => {
  const { service, port, env } = await startLimited(TIGHT_LIMIT);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 12 });
  agents.push(agent);
  // SignalWire's keep-alive connections, open before the descriptors run out.
  const warm = await Promise.all(
    Array.from({ length: 12 }, () => postSignedCallback(port, randomUUID(), agent)),
  );
  expect(warm.map(({ status }) => status)).toEqual(warm.map(() => 200));
  await exhaustDescriptors([port, Number(env.INTERNAL_PORT)]);

  const ids = Array.from({ length: 12 }, () => randomUUID());
  const answers = await Promise.all(
    ids.map((id) => postSignedCallback(port, id, agent).then(({ status }) => status)),
  );
  for (const socket of held.splice(0)) socket.destroy();

  for (const status of answers) expect([200, 503]).toContain(status);
  // The operator is told why: the database could not be reached for want of descriptors —
  // not that PostgreSQL refused each event for its data.
  expect(messages('cannot reach the database', service).join('\n')).toContain('[EMFILE]');
  expect(messages('event refused by the database', service)).toEqual([]);
  expect(messages('recording its events one by one', service)).toEqual([]);
  const acknowledged = ids.filter((_id, i) => answers[i] === 200);
  await eventually(
    async () =>
      (await database.pool.query('SELECT 1 FROM messages WHERE id::text = ANY($1)', [acknowledged]))
        .rowCount === acknowledged.length,
    'every acknowledged callback stored',
    30_000,
  );
  await eventually(
    async () => (await postSignedCallback(port, randomUUID())).status === 200,
    'callbacks stored again',
  );
});

test('When the process has no descriptor left for a database connection, then the query API answers 503 with Retry-After, not 500, and 200 once it has', async () => {
  const { service, port, env } = await startLimited(TIGHT_LIMIT);
  const internal = Number(env.INTERNAL_PORT);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  agents.push(agent);
  const read = () =>
    new Promise<{ status: number; retryAfter?: string }>((resolve) => {
      const req = http.get(
        {
          host: '127.0.0.1',
          port: internal,
          path: '/v1/messages?limit=1',
          agent,
          timeout: 5_000,
          headers: { Authorization: `Bearer ${env.API_TOKENS}` },
        },
        (res) => {
          res.resume();
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              retryAfter: res.headers['retry-after'] as string | undefined,
            }),
          );
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve({ status: 0 }));
    });
  expect((await Promise.all([read(), read(), read(), read()])).map((r) => r.status)).toEqual([
    200, 200, 200, 200,
  ]);
  await exhaustDescriptors([port, internal]);

  const answers = await Promise.all([read(), read(), read(), read()]);
  for (const socket of held.splice(0)) socket.destroy();

  expect(answers.map((a) => a.status)).not.toContain(500);
  for (const answer of answers.filter((a) => a.status === 503)) {
    expect(answer.retryAfter).toBeDefined();
  }
  expect(messages('unhandled error', service)).toEqual([]);
  await eventually(async () => (await read()).status === 200, 'reads answered again');
});
