import { z } from 'zod';

/**
 * The only reader of process.env. Every variable is validated here at start-up so a bad
 * deployment fails at once with one line per bad variable, instead of at the first request.
 */

/** Signing key of the built-in simulator: trusted by default when it is the upstream. */
export const SIMULATOR_SIGNING_KEY = 'PSK_sw_status_simulator_development_key';
/** Callback-token secret used outside production when none is configured. */
export const DEV_CALLBACK_TOKEN_SECRET = 'sw-status-development-callback-token-secret';
export const DEV_API_TOKEN = 'dev-token';

const list = z.string().transform((s) =>
  s
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0),
);

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((s) => s === 'true' || s === '1' || s === 'yes');

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();

const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL')
  .transform((u) => u.replace(/\/+$/, ''));

const EnvSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: port.default(8080),
  INTERNAL_PORT: port.default(8081),
  HOST: z.string().min(1).default('0.0.0.0'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// connection string')
    .optional(),
  DATABASE_POOL_MAX: positiveInt.default(10),
  PUBLIC_BASE_URL: httpUrl.optional(),
  SIGNALWIRE_SPACE_URL: httpUrl.optional(),
  SIGNALWIRE_PROJECT_IDS: list.default([]),
  SIGNALWIRE_SIGNING_KEYS: list.optional(),
  SIGNALWIRE_TIMEOUT_MS: positiveInt.default(10_000),
  CALLBACK_TOKEN_SECRET: list.optional(),
  API_TOKENS: list.optional(),
  ALLOW_UNSIGNED_CALLBACKS: bool.default(false),
  STORE_BODY: bool.default(false),
  // Express's `trust proxy`: a hop count, `true`/`false`, or a list of addresses/subnets.
  TRUST_PROXY: z.string().default('false'),
  // SignalWire delivers callbacks from a handful of addresses, so a per-address limit must
  // leave room for a bulk send's burst: ~1000/s per address per replica.
  RATE_LIMIT_PUBLIC_PER_MINUTE: positiveInt.default(60_000),
  RATE_LIMIT_QUERY_PER_MINUTE: positiveInt.default(1200),
  SHUTDOWN_DRAIN_MS: positiveInt.default(10_000),
  // Unset: 5 s in production (see shutdownDelayMs), 0 elsewhere.
  SHUTDOWN_DELAY_MS: z.coerce.number().int().min(0).optional(),
  INGEST_BATCH_MAX: positiveInt.default(200),
  // Applies only while another batch commits. 1 ms (Node's shortest timer) measured 8 % more
  // callbacks/s than 2 ms with 32 concurrent senders: commits are short, waiting is not free.
  INGEST_BATCH_WAIT_MS: z.coerce.number().min(0).default(1),
  INGEST_QUEUE_MAX: positiveInt.default(5000),
  SPOOL_DIR: z.string().min(1).default('.data/spool'),
  SIMULATOR_PORT: port.default(0),
  // Browser origins allowed to call /v1/* (src/http/cors.ts): scheme://host[:port], or *.
  CORS_ORIGINS: list
    .pipe(
      z.array(
        z
          .string()
          .regex(
            /^(\*|https?:\/\/[^/\s]+)$/,
            'each origin is scheme://host[:port] (no path), or *',
          ),
      ),
    )
    .default([]),
});

/** Every environment variable the service reads (deployment manifests are checked against it). */
export const ENV_VARIABLES = Object.freeze(Object.keys(EnvSchema.shape));

export type TrustProxy = boolean | number | string[];

export interface Config {
  nodeEnv: 'development' | 'production' | 'test';
  isProduction: boolean;
  port: number;
  internalPort: number;
  host: string;
  logLevel: string;
  /** undefined → start an embedded PostgreSQL (never in production). */
  databaseUrl: string | undefined;
  databasePoolMax: number;
  publicBaseUrl: string;
  /** undefined → start the built-in simulator as upstream (never in production). */
  signalwireSpaceUrl: string | undefined;
  signalwireProjectIds: readonly string[];
  signingKeys: readonly string[];
  signalwireTimeoutMs: number;
  /** The first mints callback tokens; all verify (receipts can arrive days after the send). */
  callbackTokenSecrets: readonly string[];
  apiTokens: readonly string[];
  allowUnsignedCallbacks: boolean;
  storeBody: boolean;
  trustProxy: TrustProxy;
  rateLimitPublicPerMinute: number;
  rateLimitQueryPerMinute: number;
  /** After SIGTERM, how long to wait for in-flight requests before closing connections. */
  shutdownDrainMs: number;
  /**
   * After SIGTERM, how long to keep serving with readiness failing before the listeners close:
   * Kubernetes removes the pod from its Service endpoints only after a probe or two, and the
   * load balancer keeps sending requests until then.
   */
  shutdownDelayMs: number;
  ingestBatchMax: number;
  ingestBatchWaitMs: number;
  ingestQueueMax: number;
  spoolDir: string;
  simulatorPort: number;
  /** Browser origins allowed to call the query API; empty: none. */
  corsOrigins: readonly string[];
  /** Human-readable notes on the development defaults in force, for the start log. */
  defaultsInForce: readonly string[];
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function parseTrustProxy(value: string): TrustProxy {
  const v = value.trim();
  if (v === '' || v === 'false') return false;
  if (v === 'true') return true;
  if (/^\d+$/.test(v)) return Number(v);
  return v.split(',').map((s) => s.trim());
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "unset": deployment tools often render missing values as "".
  const present = Object.fromEntries(
    Object.entries(env).filter(([key, value]) => key in EnvSchema.shape && value !== ''),
  );
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => `${String(issue.path[0] ?? '?')}: ${issue.message}`),
    );
  }
  const e = parsed.data;
  const isProduction = e.NODE_ENV === 'production';
  const problems: string[] = [];
  const defaults: string[] = [];

  // In production every development default is refused: each missing value is named.
  const requireInProduction = (name: string, isSet: boolean, note: string): void => {
    if (isSet) return;
    if (isProduction) problems.push(`${name}: required when NODE_ENV=production`);
    else defaults.push(note);
  };
  requireInProduction('DATABASE_URL', !!e.DATABASE_URL, 'DATABASE_URL unset: embedded PostgreSQL');
  requireInProduction(
    'SIGNALWIRE_SPACE_URL',
    !!e.SIGNALWIRE_SPACE_URL,
    'SIGNALWIRE_SPACE_URL unset: built-in SignalWire simulator as upstream',
  );
  requireInProduction(
    'SIGNALWIRE_SIGNING_KEYS',
    !!e.SIGNALWIRE_SIGNING_KEYS?.length,
    'SIGNALWIRE_SIGNING_KEYS unset: the simulator signing key',
  );
  requireInProduction(
    'CALLBACK_TOKEN_SECRET',
    !!e.CALLBACK_TOKEN_SECRET?.length,
    'CALLBACK_TOKEN_SECRET unset: fixed development secret',
  );
  requireInProduction('API_TOKENS', !!e.API_TOKENS?.length, `API_TOKENS unset: "${DEV_API_TOKEN}"`);
  requireInProduction(
    'PUBLIC_BASE_URL',
    !!e.PUBLIC_BASE_URL,
    `PUBLIC_BASE_URL unset: http://127.0.0.1:${e.PORT}`,
  );
  if (isProduction && e.ALLOW_UNSIGNED_CALLBACKS) {
    problems.push('ALLOW_UNSIGNED_CALLBACKS: must not be true when NODE_ENV=production');
  }
  if (e.ALLOW_UNSIGNED_CALLBACKS)
    defaults.push('ALLOW_UNSIGNED_CALLBACKS=true: callbacks are not authenticated');
  if (isProduction) {
    // The example Secret ships placeholders; a forgotten one must stop the pod, not become a
    // working API token.
    for (const name of [
      'DATABASE_URL',
      'SIGNALWIRE_SIGNING_KEYS',
      'CALLBACK_TOKEN_SECRET',
      'API_TOKENS',
    ] as const) {
      if (/REPLACE_ME/i.test(env[name] ?? ''))
        problems.push(`${name}: still holds the REPLACE_ME placeholder`);
    }
  }
  for (const secret of e.CALLBACK_TOKEN_SECRET ?? []) {
    // A short secret makes the per-send token guessable offline.
    if (secret.length < 16)
      problems.push('CALLBACK_TOKEN_SECRET: each secret needs at least 16 characters');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return Object.freeze({
    nodeEnv: e.NODE_ENV,
    isProduction,
    port: e.PORT,
    internalPort: e.INTERNAL_PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    databaseUrl: e.DATABASE_URL,
    databasePoolMax: e.DATABASE_POOL_MAX,
    publicBaseUrl: e.PUBLIC_BASE_URL ?? `http://127.0.0.1:${e.PORT}`,
    signalwireSpaceUrl: e.SIGNALWIRE_SPACE_URL,
    signalwireProjectIds: Object.freeze(e.SIGNALWIRE_PROJECT_IDS),
    signingKeys: Object.freeze(
      e.SIGNALWIRE_SIGNING_KEYS?.length ? e.SIGNALWIRE_SIGNING_KEYS : [SIMULATOR_SIGNING_KEY],
    ),
    signalwireTimeoutMs: e.SIGNALWIRE_TIMEOUT_MS,
    callbackTokenSecrets: Object.freeze(
      e.CALLBACK_TOKEN_SECRET?.length ? e.CALLBACK_TOKEN_SECRET : [DEV_CALLBACK_TOKEN_SECRET],
    ),
    apiTokens: Object.freeze(e.API_TOKENS?.length ? e.API_TOKENS : [DEV_API_TOKEN]),
    allowUnsignedCallbacks: e.ALLOW_UNSIGNED_CALLBACKS,
    storeBody: e.STORE_BODY,
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
    rateLimitPublicPerMinute: e.RATE_LIMIT_PUBLIC_PER_MINUTE,
    rateLimitQueryPerMinute: e.RATE_LIMIT_QUERY_PER_MINUTE,
    shutdownDrainMs: e.SHUTDOWN_DRAIN_MS,
    shutdownDelayMs: e.SHUTDOWN_DELAY_MS ?? (isProduction ? 5_000 : 0),
    ingestBatchMax: e.INGEST_BATCH_MAX,
    ingestBatchWaitMs: e.INGEST_BATCH_WAIT_MS,
    ingestQueueMax: e.INGEST_QUEUE_MAX,
    spoolDir: e.SPOOL_DIR,
    simulatorPort: e.SIMULATOR_PORT,
    corsOrigins: Object.freeze(e.CORS_ORIGINS),
    defaultsInForce: Object.freeze(defaults),
  });
}
