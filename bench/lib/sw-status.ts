import { randomBytes } from 'node:crypto';
import { BENCH_PUBLIC_BASE_URL, BENCH_SIGNING_KEY } from './request-pool';

export const BENCH_API_TOKEN = 'bench-api-token-0123456789';

/**
 * The environment of sw-status (src/main.ts) in production mode, for a benchmark.
 * BENCH_SW_STATUS_ENV adds to it or overrides it, as `NAME=value` pairs separated by spaces
 * (e.g. `INGEST_BATCH_WAIT_MS=2 DATABASE_POOL_MAX=4`): how the ingest settings' effect is
 * measured (docs/scaling.md).
 */
export function swStatusEnv(
  databaseUrl: string,
  internalPort: number,
  spoolDir: string,
  /** More `NAME=value` pairs, after BENCH_SW_STATUS_ENV's (bench/compare-ingest.ts). */
  extra = '',
): Record<string, string> {
  return {
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    INTERNAL_PORT: String(internalPort),
    LOG_LEVEL: 'info',
    DATABASE_URL: databaseUrl,
    PUBLIC_BASE_URL: BENCH_PUBLIC_BASE_URL,
    SIGNALWIRE_SPACE_URL: 'http://127.0.0.1:9',
    SIGNALWIRE_SIGNING_KEYS: BENCH_SIGNING_KEY,
    CALLBACK_TOKEN_SECRET: randomBytes(24).toString('hex'),
    API_TOKENS: BENCH_API_TOKEN,
    // One load generator is one client address (and one token): per-client limits would cap it.
    RATE_LIMIT_PUBLIC_PER_MINUTE: '1000000000',
    // bench:adversarial sends forged callbacks from one address: measure their verification,
    // not the 429s the failed-authentication budget answers after a few hundred.
    RATE_LIMIT_PUBLIC_AUTH_FAILURES_PER_MINUTE: '1000000000',
    RATE_LIMIT_QUERY_PER_MINUTE: '1000000000',
    SPOOL_DIR: spoolDir,
    SHUTDOWN_DELAY_MS: '0',
    ...benchOverrides(process.env.BENCH_SW_STATUS_ENV ?? ''),
    ...benchOverrides(extra),
  };
}

function benchOverrides(pairs: string): Record<string, string> {
  const entries = pairs
    .split(/\s+/)
    .filter(Boolean)
    .map((pair) => {
      const equals = pair.indexOf('=');
      if (equals <= 0) throw new Error(`BENCH_SW_STATUS_ENV: "${pair}" is not NAME=value`);
      return [pair.slice(0, equals), pair.slice(equals + 1)] as const;
    });
  return Object.fromEntries(entries);
}
