import type { Express } from 'express';
import { createInternalApp, createPublicApp } from '../../src/app';
import type { AppDeps } from '../../src/app';
import { loadConfig } from '../../src/config';
import type { Config } from '../../src/config';
import type { Lifecycle } from '../../src/http/health.routes';
import { createFeedSignal } from '../../src/feed/feed-signal';
import type { FeedSignal } from '../../src/feed/feed-signal';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { maxInFlightFor } from '../../src/ingest/ingest';
import { createDb } from '../../src/db/database';
import { createLogger } from '../../src/logger';
import { directRecorder } from '../../src/messages/event-recorder';
import type { EventRecorder } from '../../src/messages/event-recorder';
import type { RecordOptions } from '../../src/messages/record-events';
import { createMetrics } from '../../src/metrics/metrics';
import { createRedactionRetries } from '../../src/proxy/redaction-retries';
import type { RedactionRetryTimings } from '../../src/proxy/redaction-retries';
import { checkedAgainstOpenApi } from './openapi';
import { createTestDatabase } from './test-database';
import type { TestDatabase } from './test-database';

export const TEST_SIGNING_KEY = 'PSK_test_signing_key_0123456789';
export const TEST_PUBLIC_BASE_URL = 'https://hooks.example.com';
export const TEST_API_TOKEN = 'test-api-token';
export const TEST_TOKEN_SECRET = 'test-callback-token-secret-0123456789';

/** The service's configuration with the test keys, secrets and token; `env` overrides. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL,
    SIGNALWIRE_SIGNING_KEYS: TEST_SIGNING_KEY,
    CALLBACK_TOKEN_SECRET: TEST_TOKEN_SECRET,
    API_TOKENS: TEST_API_TOKEN,
    SIGNALWIRE_SPACE_URL: 'http://127.0.0.1:9',
    ...env,
  });
}

export interface TestApp {
  config: Config;
  database: TestDatabase;
  deps: AppDeps;
  publicApp: Express;
  internalApp: Express;
  /** Wakes this app's change-feed long-polls (its LISTEN connection is its own). */
  feedSignal: FeedSignal;
  close(): Promise<void>;
}

/**
 * The service as main.ts builds it, on the file's own database, through the same
 * createPublicApp/createInternalApp doors. `env` overrides the test defaults.
 */
export async function createTestApp(
  env: Record<string, string> = {},
  options: {
    /** Gets the file's database too, e.g. to reach it through its own pool. */
    recorder?: (deps: Omit<AppDeps, 'recorder'>, database: TestDatabase) => EventRecorder;
    /**
     * Another app's database: a second instance of the service on the same database, with
     * its own pool, recorder and LISTEN connection (like another replica). Its close()
     * leaves the database to its owner.
     */
    database?: TestDatabase;
    /** DATABASE_READ_URL's pool: lists, stats and the feed read there (DESIGN §13). */
    readDb?: AppDeps['readDb'];
    /** With readDb: its lag (createReaderDb's lagSeconds), for the replica's gauge. */
    readLagSeconds?: AppDeps['readLagSeconds'];
    /** How often a long-poll looks on its own while hints arrive (1 s); long: hints alone. */
    feedPollMs?: number;
    /**
     * prom-client's process metrics (collectDefaultMetrics): off unless a test reads them.
     * Their event-loop-delay histogram is never disabled, so it kept every test file's whole
     * module graph alive in the jest worker (about 17 MB a file).
     */
    processMetrics?: boolean;
    /** The background retries of redactions the store could not apply (shorter for a test). */
    redactionRetryTimings?: Partial<RedactionRetryTimings>;
  } = {},
): Promise<TestApp> {
  const config = testConfig(env);
  const shared = options.database;
  const database = shared ? connectTo(shared) : await createTestDatabase();
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const lifecycle: Lifecycle = { draining: false };
  const base = { config, logger, db: database.db, lifecycle };
  // Like main.ts: a registry of the app's own, reading this file's pool.
  const metrics = createMetrics({
    pool: database.pool,
    processMetrics: options.processMetrics ?? false,
  });
  const feedSignal = createFeedSignal({
    connectionString: database.url,
    logger,
    pollWhileListeningMs: options.feedPollMs,
  });
  const recordOptions: RecordOptions = {
    onTransition: metrics.observeTransition,
    onCommitted: feedSignal.committed,
  };
  const recorder = options.recorder
    ? options.recorder(base, database)
    : defaultRecorder(base, recordOptions);
  // Like main.ts: stopped when the app closes.
  const redactionRetries = createRedactionRetries({
    db: database.db,
    logger,
    timings: options.redactionRetryTimings,
  });
  const deps: AppDeps = {
    ...base,
    recorder,
    redactionRetries,
    metrics,
    feedSignal,
    readDb: options.readDb,
    readLagSeconds: options.readLagSeconds,
  };
  return {
    config,
    database,
    deps,
    publicApp: checkedAgainstOpenApi(createPublicApp(deps), 'public'),
    internalApp: checkedAgainstOpenApi(createInternalApp(deps), 'internal'),
    feedSignal,
    async close() {
      await redactionRetries.stop();
      await feedSignal.close();
      await recorder.drain();
      await database.destroy();
    },
  };
}

/** The same database through a pool of its own; destroy() only closes that pool. */
function connectTo(database: TestDatabase): TestDatabase {
  const handle = createDb(database.url);
  return { ...handle, url: database.url, destroy: () => handle.db.destroy() };
}

/**
 * SW_TEST_RECORDER=group-commit puts production's group-commit recorder (without a spool)
 * behind the apps; test/ingest/api-through-production-stack.test.ts runs the API suite so.
 * Without a spool a batch not committed within the commit timeout is refused 503 (production
 * always has one, and spools it): on a loaded CI machine a commit once took longer than the
 * default 3 s and a property test read the 503. The API suite tests what is stored and said,
 * not that bound (test/ingest has its own tests of it), so the bound here is 30 s.
 */
function defaultRecorder(
  base: Omit<AppDeps, 'recorder'>,
  recordOptions: RecordOptions,
): EventRecorder {
  if (process.env.SW_TEST_RECORDER !== 'group-commit') {
    return directRecorder(base.db, recordOptions);
  }
  const { config } = base;
  return createGroupCommitRecorder({
    db: base.db,
    logger: base.logger,
    recordOptions,
    batchMax: config.ingestBatchMax,
    batchWaitMs: config.ingestBatchWaitMs,
    queueMax: config.ingestQueueMax,
    queueMaxBytes: config.ingestQueueMaxBytes,
    maxInFlight: maxInFlightFor(config.databasePoolMax),
    commitTimeoutMs: 30_000,
  });
}
