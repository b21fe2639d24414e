import type { Express } from 'express';
import { createInternalApp, createPublicApp } from '../../src/app';
import type { AppDeps } from '../../src/app';
import { loadConfig } from '../../src/config';
import type { Config } from '../../src/config';
import type { Lifecycle } from '../../src/http/health.routes';
import { createLogger } from '../../src/logger';
import { directRecorder } from '../../src/messages/event-recorder';
import type { EventRecorder } from '../../src/messages/event-recorder';
import { createMetrics } from '../../src/metrics/metrics';
import { createTestDatabase } from './test-database';
import type { TestDatabase } from './test-database';

export const TEST_SIGNING_KEY = 'PSK_test_signing_key_0123456789';
export const TEST_PUBLIC_BASE_URL = 'https://hooks.example.com';
export const TEST_API_TOKEN = 'test-api-token';
export const TEST_TOKEN_SECRET = 'test-callback-token-secret-0123456789';

export interface TestApp {
  config: Config;
  database: TestDatabase;
  deps: AppDeps;
  publicApp: Express;
  internalApp: Express;
  close(): Promise<void>;
}

/**
 * The service as main.ts builds it, on the file's own database, through the same
 * createPublicApp/createInternalApp doors. `env` overrides the test defaults.
 */
export async function createTestApp(
  env: Record<string, string> = {},
  options: { recorder?: (deps: Omit<AppDeps, 'recorder'>) => EventRecorder } = {},
): Promise<TestApp> {
  const config = loadConfig({
    NODE_ENV: 'test',
    PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL,
    SIGNALWIRE_SIGNING_KEYS: TEST_SIGNING_KEY,
    CALLBACK_TOKEN_SECRET: TEST_TOKEN_SECRET,
    API_TOKENS: TEST_API_TOKEN,
    SIGNALWIRE_SPACE_URL: 'http://127.0.0.1:9',
    ...env,
  });
  const database = await createTestDatabase();
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const lifecycle: Lifecycle = { draining: false };
  const base = { config, logger, db: database.db, lifecycle };
  // Like main.ts: a registry of the app's own, reading this file's pool.
  const metrics = createMetrics({ pool: database.pool });
  const recorder = options.recorder
    ? options.recorder(base)
    : directRecorder(database.db, { onTransition: metrics.observeTransition });
  const deps: AppDeps = { ...base, recorder, metrics };
  return {
    config,
    database,
    deps,
    publicApp: createPublicApp(deps),
    internalApp: createInternalApp(deps),
    async close() {
      await recorder.drain();
      await database.destroy();
    },
  };
}
