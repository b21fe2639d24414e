import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createPublicApp } from '../../src/app';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { createFastServer } from '../../src/http/fast-server';
import type { Lifecycle } from '../../src/http/health.routes';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { signFormParams } from '../../src/signalwire/signing';
import { cxmlFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, testConfig } from '../helpers/test-app';
import { createDisposablePostgres } from './support/disposable-postgres';
import type { DisposablePostgres } from './support/disposable-postgres';
import { eventually } from '../helpers/eventually';

/**
 * A real outage: the service's own PostgreSQL is stopped for 20 seconds while callbacks keep
 * arriving over HTTP, then started again. Every acknowledged callback must end up in the
 * history exactly once — SignalWire does not retry an acknowledged callback.
 */

const OUTAGE_MS = 20_000;
const SENDERS = 4;

let pg: DisposablePostgres;
let database: DatabaseHandle;
let spoolDir: string;
let recorder: GroupCommitRecorder;
let server: http.Server;
let port: number;
const agent = new http.Agent({ keepAlive: true, maxSockets: SENDERS });

beforeAll(async () => {
  pg = await createDisposablePostgres();
  database = createDb(pg.url, 6);
  await migrateToLatest(database.db);
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-outage-spool-'));
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const config = testConfig({
    SPOOL_DIR: spoolDir,
    // The test is one client sending as fast as it is answered.
    RATE_LIMIT_PUBLIC_PER_MINUTE: '1000000',
  });
  recorder = createGroupCommitRecorder({
    db: database.db,
    logger,
    spool: await openSpool({ dir: spoolDir, logger }),
    batchMax: config.ingestBatchMax,
    batchWaitMs: config.ingestBatchWaitMs,
    queueMax: config.ingestQueueMax,
    maxInFlight: 2,
    probeIntervalMs: 250,
  });
  const lifecycle: Lifecycle = { draining: false, ingest: recorder };
  server = createFastServer(
    createPublicApp({ config, logger, db: database.db, recorder, lifecycle }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
}, 60_000);

afterAll(async () => {
  agent.destroy();
  await new Promise((resolve) => server?.close(resolve));
  await recorder?.drain();
  await database?.db.destroy();
  await pg?.destroy();
  if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
});

function call(
  method: 'GET' | 'POST',
  urlPath: string,
  body?: string,
  headers: Record<string, string> = {},
) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, agent, headers },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function postCallback(fields: Record<string, string>) {
  const signature = signFormParams(
    TEST_SIGNING_KEY,
    `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`,
    Object.entries(fields),
  );
  return call('POST', '/callbacks/cxml', new URLSearchParams(fields).toString(), {
    'Content-Type': 'application/x-www-form-urlencoded',
    'X-SignalWire-Signature': signature,
  });
}

test('When PostgreSQL is stopped for 20 seconds while callbacks keep arriving, then every acknowledged callback is in the history exactly once', async () => {
  const acknowledged = new Set<string>(); // `${MessageSid} ${MessageStatus}`
  const refused: number[] = [];
  let sending = true;

  // Each sender walks messages through queued → sent → delivered and now and then sends a
  // callback again, as SignalWire's duplicates do.
  const sender = async (): Promise<void> => {
    while (sending) {
      const sid = randomUUID();
      for (const status of ['queued', 'sent', 'delivered']) {
        const fields = cxmlFields({ MessageSid: sid, MessageStatus: status });
        const copies = Math.random() < 0.1 ? 2 : 1;
        for (let copy = 0; copy < copies; copy++) {
          const res = await postCallback(fields);
          if (res.status === 200) acknowledged.add(`${sid} ${status}`);
          else refused.push(res.status);
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  };
  const senders = Array.from({ length: SENDERS }, sender);
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  await pause(2_000);
  const beforeOutage = acknowledged.size;
  await pg.stop();
  await pause(OUTAGE_MS / 2);
  expect(recorder.mode()).toBe('spooling');
  const ready = await call('GET', '/readyz');
  expect(ready.status).toBe(200);
  expect(JSON.parse(ready.body)).toEqual(
    expect.objectContaining({
      database: 'unreachable',
      spool: expect.objectContaining({ state: 'spooling' }),
    }),
  );
  await pause(OUTAGE_MS / 2);
  const duringOutage = acknowledged.size - beforeOutage;
  await pg.start();
  await pause(3_000);
  sending = false;
  await Promise.all(senders);
  await eventually(() => recorder.mode() === 'direct', 'the spool replayed', 30_000);

  expect(refused).toEqual([]);
  expect(duringOutage).toBeGreaterThan(100);
  const ids = [...new Set([...acknowledged].map((key) => key.split(' ')[0]!))];
  const rows = await database.db
    .selectFrom('status_events')
    .select(['message_id', 'raw_status', 'source'])
    .where('message_id', 'in', ids)
    .execute();
  const stored = rows.map((row) => `${row.message_id} ${row.raw_status}`);
  expect(stored.length).toBe(new Set(stored).size); // no duplicates
  expect(new Set(stored)).toEqual(acknowledged); // nothing lost
  expect(rows.filter((row) => row.source === 'replay').length).toBeGreaterThan(100);
  expect((await readdir(spoolDir)).filter((name) => name.startsWith('spool-'))).toEqual([]);
}, 60_000);
