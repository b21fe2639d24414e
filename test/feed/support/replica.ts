import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInternalApp, createPublicApp } from '../../../src/app';
import { createDb } from '../../../src/db/database';
import type { DatabaseHandle } from '../../../src/db/database';
import { createFeedSignal } from '../../../src/feed/feed-signal';
import type { FeedSignal } from '../../../src/feed/feed-signal';
import { createFastServer } from '../../../src/http/fast-server';
import type { Lifecycle } from '../../../src/http/health.routes';
import { createGroupCommitRecorder } from '../../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../../src/ingest/group-commit-recorder';
import { openSpool } from '../../../src/ingest/spool';
import { createLogger } from '../../../src/logger';
import { recordEvents } from '../../../src/messages/record-events';
import { createMetrics } from '../../../src/metrics/metrics';
import { signFormParams } from '../../../src/signalwire/signing';
import { checkedAgainstOpenApi } from '../../helpers/openapi';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  testConfig,
} from '../../helpers/test-app';

/**
 * One replica of the service as main.ts builds it — its own pool, production group-commit
 * recorder (with an outage spool when given a directory), change-feed signal with its own
 * LISTEN connection, both listeners on real sockets — on a database other replicas share.
 */
export interface Replica {
  name: string;
  recorder: GroupCommitRecorder;
  feedSignal: FeedSignal;
  database: DatabaseHandle;
  /** POSTs a signed form callback to the public listener; resolves with the status. */
  callback(fields: Record<string, string>): Promise<number>;
  /** GETs a path of the internal listener with the API token. */
  get(path: string): Promise<{ status: number; body: string }>;
  close(): Promise<void>;
}

export async function startReplica(options: {
  name: string;
  url: string;
  spoolDir?: string;
  /** Fails some batches on purpose, so their events take the one-by-one fallback. */
  failBatches?: () => boolean;
  /** How often a long-poll looks on its own while hints arrive (src/feed/feed-signal.ts). */
  pollWhileListeningMs?: number;
}): Promise<Replica> {
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const config = testConfig({
    RATE_LIMIT_PUBLIC_PER_MINUTE: '100000000',
    RATE_LIMIT_QUERY_PER_MINUTE: '100000000',
    ...(options.spoolDir && { SPOOL_DIR: options.spoolDir }),
  });
  const database = createDb(options.url, 10);
  const feedSignal = createFeedSignal({
    connectionString: options.url,
    logger,
    pollWhileListeningMs: options.pollWhileListeningMs,
  });
  const failBatches = options.failBatches;
  const recorder = createGroupCommitRecorder({
    db: database.db,
    logger,
    spool: options.spoolDir ? await openSpool({ dir: options.spoolDir, logger }) : undefined,
    recordOptions: { onCommitted: feedSignal.committed },
    batchMax: config.ingestBatchMax,
    batchWaitMs: config.ingestBatchWaitMs,
    queueMax: config.ingestQueueMax,
    maxInFlight: 4,
    probeIntervalMs: 200,
    write: failBatches
      ? (db, events, recordOptions) =>
          events.length > 1 && failBatches()
            ? Promise.reject(new Error('batch failed on purpose'))
            : recordEvents(db, events, recordOptions)
      : undefined,
  });
  recorder.start();
  const lifecycle: Lifecycle = { draining: false, ingest: recorder };
  const metrics = createMetrics({ pool: database.pool, processMetrics: false });
  const deps = { config, logger, db: database.db, recorder, lifecycle, feedSignal, metrics };
  const publicServer = await listen(
    createFastServer(checkedAgainstOpenApi(createPublicApp(deps), 'public')),
  );
  const internalServer = await listen(
    createFastServer(checkedAgainstOpenApi(createInternalApp(deps), 'internal')),
  );
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  const call = (
    server: http.Server,
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: string,
  ) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: (server.address() as AddressInfo).port,
          method,
          path,
          agent,
          headers,
        },
        (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  return {
    name: options.name,
    recorder,
    feedSignal,
    database,
    async callback(fields) {
      const signature = signFormParams(
        TEST_SIGNING_KEY,
        `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`,
        Object.entries(fields),
      );
      const res = await call(
        publicServer,
        'POST',
        '/callbacks/cxml',
        {
          'Content-Type': 'application/x-www-form-urlencoded',
          'X-SignalWire-Signature': signature,
        },
        new URLSearchParams(fields).toString(),
      );
      return res.status;
    },
    get: (path) => call(internalServer, 'GET', path, { Authorization: `Bearer ${TEST_API_TOKEN}` }),
    async close() {
      await feedSignal.close();
      agent.destroy();
      await Promise.all([close(publicServer), close(internalServer)]);
      await recorder.drain();
      await database.db.destroy();
    },
  };
}

function listen(server: http.Server): Promise<http.Server> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
