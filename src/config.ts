import express from 'express';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import type { EgressProxySettings } from './signalwire/egress-proxy';

/**
 * The service's only reader of process.env (the command-line tools read their few variables
 * themselves). Every variable is validated here at start-up so a bad
 * deployment fails at once with one line per bad variable — all of them in one go, malformed
 * values and missing production values alike — instead of at the first request.
 */

/**
 * Signing key of the built-in simulator: the default SIGNALWIRE_SIGNING_KEYS only while the
 * simulator is the upstream (no SIGNALWIRE_SPACE_URL). The key is published in this source,
 * so with a real upstream it would let anyone sign a callback.
 */
export const SIMULATOR_SIGNING_KEY = 'PSK_sw_status_simulator_development_key';
/** Callback-token secret used outside production when none is configured. */
export const DEV_CALLBACK_TOKEN_SECRET = 'sw-status-development-callback-token-secret';
export const DEV_API_TOKEN = 'dev-token';
/** SPOOL_DIR's default; the spool command (src/ingest/spool-cli.ts) reads SPOOL_DIR through cliSpoolDir. */
export const DEFAULT_SPOOL_DIR = '.data/spool';
/** Where relays may go outside production without RELAY_ALLOWED_NETWORKS: an app on this host. */
export const LOOPBACK_NETWORKS = ['127.0.0.0/8', '::1/128'] as const;

const list = z.string().transform((s) =>
  s
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0),
);

const BOOLEAN_WORDS = ['true', 'false', '1', '0', 'yes', 'no'] as const;
// White space around the word is dropped before any schema sees a value (envValue).
const bool = z
  .enum(BOOLEAN_WORDS, `must be one of ${BOOLEAN_WORDS.join(', ')}`)
  .transform((s) => s === 'true' || s === '1' || s === 'yes');

/**
 * A variable's value as every reader of the environment takes it (loadConfig, the
 * command-line tools, the simulator's command): empty is unset — deployment tools often
 * render missing values as "" — and white space around a value is dropped (a YAML or .env
 * slip), for every variable alike. Blank (white space only) stays a value: a blank number or
 * URL is refused, not quietly defaulted.
 */
export function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value.trim();
}

/**
 * A number written in decimal. Not z.coerce.number(), which is Number(): '' and ' ' are 0 (a
 * blank PORT would listen on a random free port), '0x1F90' is 8080 and '1e3' is 1000.
 */
const decimal = (pattern: RegExp, expected: string) =>
  z.string().trim().regex(pattern, `must be ${expected}`).transform(Number);
const wholeNumber = decimal(/^\d+$/, 'a whole number (digits only)');
const decimalNumber = decimal(/^\d+(\.\d+)?$/, 'a decimal number (digits, optionally a point)');

export const port = wholeNumber.pipe(z.number().int().min(0).max(65535));
const positiveInt = wholeNumber.pipe(z.number().int().positive());
/**
 * Node's timers hold at most 2^31 − 1 ms (about 24.8 days) and silently fire after 1 ms
 * instead: a longer timeout would make every send a 504, or SIGTERM skip its drain.
 */
const MAX_TIMER_MS = 2_147_483_647;
const TIMER_MESSAGE = 'must be at most 2147483647 (Node’s longest timer)';
export const millis = wholeNumber.pipe(
  z.number().int().positive().max(MAX_TIMER_MS, TIMER_MESSAGE),
);
/** As millis, 0 included (no wait at all). */
export const millisOrZero = wholeNumber.pipe(
  z.number().int().min(0).max(MAX_TIMER_MS, TIMER_MESSAGE),
);

/**
 * A base URL the service appends paths to: http(s), and nothing after the path. A query or
 * fragment would swallow the appended path (every callback would go to `/`), and credentials
 * would travel, and be logged, wherever the URL goes.
 */
const httpUrl = z
  .string()
  .url()
  // Schemes are case-insensitive (RFC 3986 §3.1): `HTTPS://` is https.
  .refine((u) => /^https?:\/\//i.test(u), 'must be an http(s) URL')
  .superRefine((u, context) => {
    // zod runs this even after .url() failed: a URL that does not parse is that check's to name.
    const url = URL.parse(u);
    if (!url) return;
    if (url.search !== '' || url.hash !== '' || u.includes('?') || u.includes('#')) {
      context.addIssue({ code: 'custom', message: 'must not carry a query string or fragment' });
    }
    if (url.username !== '' || url.password !== '') {
      context.addIssue({ code: 'custom', message: 'must not carry credentials' });
    }
  })
  // The scheme as SignalWire and every URL parser write it: the callback URLs built on it are
  // the ones signatures are checked against.
  .transform((u) => u.replace(/^https?:/i, (scheme) => scheme.toLowerCase()).replace(/\/+$/, ''));

/**
 * Whether a URL's authority ends before its writer meant it to: an unencoded `#`, `/` or `?` in
 * a password ends it early (`user:Xk9@host#Bt7@db.internal`), and what follows becomes the
 * host, path or fragment — the URL still parses, with a piece of the password for a host, which
 * every connection error then names in the log. A `#` has no meaning in these URLs at all; an
 * `@` in the path is the rest of a userinfo; in the query an `@` is a value's own
 * (`user=sw@tenant`) unless a host and a path follow it (`?Bt7@db.internal:5432/sw`).
 */
function splitsPassword(url: string): boolean {
  if (url.includes('#')) return true;
  const rest = url.slice(url.indexOf('://') + 3);
  const authorityEnd = rest.search(/[/?]/);
  if (authorityEnd === -1) return false;
  const queryStart = rest.indexOf('?', authorityEnd);
  const path = queryStart === -1 ? rest.slice(authorityEnd) : rest.slice(authorityEnd, queryStart);
  const query = queryStart === -1 ? '' : rest.slice(queryStart);
  return path.includes('@') || /@[^/?&=]*\//.test(query);
}

const SPLIT_PASSWORD =
  'has a #, or an @ after its host: percent-encode the password (# as %23, / as %2F, ? as %3F, @ as %40; the value is not shown)';

/**
 * A postgres:// URL node-postgres can read, checked with pg-connection-string's own steps
 * (spaces and stray `%` encoded first; `user@/db?host=…` has no host): otherwise the pool
 * fails at its first connection with a bare "Invalid URL", and the pod runs, never ready,
 * with nothing naming the variable. Never echoed: it holds a password.
 */
const connectionString = z
  .string()
  // Stray spaces (a YAML or .env slip) would end up in the database's name.
  .trim()
  // Schemes are case-insensitive (RFC 3986 §3.1), as node-postgres reads them (WHATWG URL).
  .regex(/^postgres(ql)?:\/\//i, 'must be a postgres:// connection string')
  .refine((url) => !splitsPassword(url), SPLIT_PASSWORD)
  .refine(
    (url) => asNodePostgresParses(url) !== undefined,
    'is not a connection string node-postgres can read (host, port 0–65535, %-encoding)',
  )
  // pg-connection-string then decodes the user name, password and host with
  // decodeURIComponent and the database name with decodeURI, which throw "URI malformed" on a
  // % sequence that is no UTF-8 (a password `Xk9%e2Bt` written raw): every connection would
  // fail with a stack trace naming nothing. Its parse() itself is not called here: it reads
  // the sslrootcert file, whose absence is the database's outage, not a configuration error.
  .refine((url) => {
    const read = asNodePostgresParses(url);
    if (!read) return true; // named by the check above
    return (
      decodes(read.username) &&
      decodes(read.password) &&
      decodes(read.hostname) &&
      decodes(read.pathname.slice(1), decodeURI)
    );
  }, 'its user name, password, host or database is not valid percent-encoding (write % as %25; the value is not shown)');

/** The URL pg-connection-string's parse() reads `url` as (its own steps), or undefined. */
function asNodePostgresParses(url: string): URL | undefined {
  // Spaces and stray `%` encoded first, as it does.
  const text = / |%[^a-f0-9]|%[a-f0-9][^a-f0-9]/i.test(url)
    ? encodeURI(url).replace(/%25(\d\d)/g, '%$1')
    : url;
  // `user@/db?host=…` has no host: it tries again with a dummy one.
  return (
    URL.parse(text, 'postgres://base') ??
    URL.parse(text.replace('@/', '@___DUMMY___/'), 'postgres://base') ??
    undefined
  );
}

/**
 * What is wrong with a DATABASE_URL, as start-up would say it (never echoing it), or undefined:
 * for the command-line tools, which read DATABASE_URL without the service's whole configuration.
 */
export function databaseUrlProblem(url: string): string | undefined {
  const checked = connectionString.safeParse(url);
  return checked.success ? undefined : (checked.error.issues[0]?.message ?? 'is not valid');
}

// The longest step of a schedule: ten years. The schedules reach PostgreSQL as intervals
// subtracted from or added to now(), where a step of thousands of years fails every statement
// of the sweep or the relay ("timestamp out of range") long after start-up accepted it.
const MAX_SCHEDULE_STEP_DAYS = 3_650;

/** `10s,1m,5m` → milliseconds; units ms, s, m, h, d; each at most MAX_SCHEDULE_STEP_DAYS. */
const durations = z.string().transform((s, ctx) => {
  const parts = s.split(',').map((part) => part.trim());
  const values = parts.map(parseDuration);
  if (parts.length === 0 || values.some((v) => v === null)) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be durations like 10s,1m,2h (units ms, s, m, h, d)',
    });
    return z.NEVER;
  }
  if (values.some((v) => v! > MAX_SCHEDULE_STEP_DAYS * 86_400_000)) {
    ctx.addIssue({
      code: 'custom',
      message: `each duration must be at most ${MAX_SCHEDULE_STEP_DAYS}d`,
    });
    return z.NEVER;
  }
  return values as number[];
});

export function parseDuration(text: string): number | null {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return null;
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'ms'];
  const value = Number(match[1]) * unit;
  return value > 0 ? value : null;
}

/** CIDRs (`10.0.0.0/8, ::1/128`), or `none`. */
const cidrs = list.transform((items, ctx) => {
  if (items.length === 1 && items[0] === 'none') return [];
  for (const item of items) {
    if (!ipaddr.isValidCIDR(item)) {
      ctx.addIssue({ code: 'custom', message: `${item} is not a CIDR (e.g. 10.0.0.0/8, ::1/128)` });
    }
  }
  return items;
});

/**
 * A forward proxy's URL as curl takes it: http:// or https://, the scheme http:// when left
 * out (`proxy:3128`), credentials allowed (`http://user:pass@proxy:3128`). Checked here so a
 * typo stops the pod at start, not the first send; the value is never echoed: it may hold a
 * password.
 */
const proxyUrl = z.string().transform((value, ctx) => {
  const text = value.trim();
  // Blank (spaces only) is unset, as empty is.
  if (text === '') return undefined;
  const full = text.includes('://') ? text : `http://${text}`;
  if (splitsPassword(full)) {
    ctx.addIssue({ code: 'custom', message: SPLIT_PASSWORD });
    return z.NEVER;
  }
  const url = URL.parse(full);
  if (!url || !['http:', 'https:'].includes(url.protocol) || url.hostname === '') {
    ctx.addIssue({
      code: 'custom',
      message:
        'must be a proxy URL like http://proxy.internal:3128 (http or https, credentials allowed; the value is not shown)',
    });
    return z.NEVER;
  }
  // The URL parser lets a stray `%` through; the proxy agents decode the credentials and
  // would fail on every request (or at start), naming nothing.
  if (!decodes(url.username) || !decodes(url.password)) {
    ctx.addIssue({
      code: 'custom',
      message:
        'its user name or password is not valid percent-encoding (write % as %25; the value is not shown)',
    });
    return z.NEVER;
  }
  return url;
});

function decodes(text: string, decode: (text: string) => string = decodeURIComponent): boolean {
  try {
    decode(text);
    return true;
  } catch {
    return false;
  }
}

/** NO_PROXY: hosts, domains, host:port or `*`, separated by commas (or spaces, as curl allows). */
const noProxyList = z.string().transform((s) =>
  s
    .toLowerCase()
    .split(/[\s,]+/)
    .filter((item) => item.length > 0),
);

/** One project's REST credentials, from SIGNALWIRE_CREDENTIALS. */
export interface SignalwireCredential {
  /** The project id as the operator wrote it: what goes upstream (a path, a Basic username). */
  projectIdAsWritten: string;
  token: string;
}

/** `project_id:api_token,…`: the REST credentials reconciliation looks messages up with. */
const credentials = list.transform((items, ctx) => {
  const byProject = new Map<string, SignalwireCredential>();
  for (const item of items) {
    const colon = item.indexOf(':');
    // `project : token` is read as written around the colon, not as "project " and " token",
    // which would only ever get 401s. Keyed by the project in lower case, as SignalWire writes
    // project ids (and as messages store them): reconciliation looks messages up by it. What
    // goes upstream (a lookup's path and Basic username) is the project as written: SignalWire's
    // own rules on its case are not known.
    const projectIdAsWritten = item.slice(0, colon).trim();
    const project = projectIdAsWritten.toLowerCase();
    const token = item.slice(colon + 1).trim();
    if (colon === -1 || project === '' || token === '') {
      // Never echo the value: it holds an API token.
      ctx.addIssue({ code: 'custom', message: 'each entry must be project_id:api_token' });
      return z.NEVER;
    }
    if (byProject.has(project)) {
      // Which token would be meant is a guess; the project id is no secret.
      ctx.addIssue({ code: 'custom', message: `project ${project} is listed twice` });
      return z.NEVER;
    }
    byProject.set(project, { projectIdAsWritten, token });
  }
  return byProject;
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * SIGNALWIRE_SIGNING_KEYS: each entry a signing key, or `project_id:signing_key` to bind the key
 * to the project it belongs to. A SignalWire signing key (`PSK_…`) holds no colon, so an entry
 * with one names a project. A bound key verifies only callbacks of its own project: one project
 * sharing sw-status with others cannot sign a callback about another's message (README).
 */
const signingKeyList = list.transform((items, ctx) => {
  const entries: SigningKey[] = [];
  // Never echo a value: it holds a signing key. Project ids are no secret.
  const refuse = (message: string) => {
    ctx.addIssue({ code: 'custom', message });
    return z.NEVER;
  };
  for (const item of items) {
    const colon = item.indexOf(':');
    if (colon === -1) {
      entries.push({ key: item, project: null });
      continue;
    }
    // Lower case, as SignalWire writes project ids in its callbacks.
    const project = item.slice(0, colon).trim().toLowerCase();
    const key = item.slice(colon + 1).trim();
    if (project === '' || key === '') {
      return refuse('each entry must be signing_key or project_id:signing_key');
    }
    if (/^psk_/i.test(project) || UUID.test(key)) {
      return refuse('an entry is written signing_key:project_id: write the project first');
    }
    entries.push({ key, project });
  }
  // A key listed with two bindings (alone and with its project, or with two projects) would
  // verify as whichever comes first: the binding would hold or not by the order of the list.
  const bindings = new Map<string, string | null>();
  for (const { key, project } of entries) {
    const earlier = bindings.get(key);
    if (earlier !== undefined && earlier !== project) {
      return refuse(
        `a key is listed for ${earlier ?? 'any project'} and for ${project ?? 'any project'}: ` +
          'list each key once, with its one project',
      );
    }
    bindings.set(key, project);
  }
  return entries;
});

/** A signing key, and the project it is bound to (null: it verifies callbacks of any project). */
export interface SigningKey {
  key: string;
  project: string | null;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const EnvSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: port.default(8080),
  INTERNAL_PORT: port.default(8081),
  // Dual-stack: `::` takes IPv4 and IPv6 (src/http/listener.ts bindAddresses falls back to 0.0.0.0
  // without IPv6).
  // Trimmed: a stray space (a YAML or .env slip) would be looked up as a name and fail.
  HOST: z.string().trim().min(1).default('::'),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  DATABASE_URL: connectionString.optional(),
  DATABASE_POOL_MAX: positiveInt.default(10),
  PUBLIC_BASE_URL: httpUrl.optional(),
  SIGNALWIRE_SPACE_URL: httpUrl.optional(),
  // Lower case, as SignalWire writes project ids and the proxy compares them (proxy-http.ts).
  SIGNALWIRE_PROJECT_IDS: list.transform((ids) => ids.map((id) => id.toLowerCase())).default([]),
  SIGNALWIRE_SIGNING_KEYS: signingKeyList.optional(),
  SIGNALWIRE_TIMEOUT_MS: millis.default(10_000),
  CALLBACK_TOKEN_SECRET: list.optional(),
  // At most a century: send intents expire by it in SQL (now() - the TTL), which refuses a
  // date thousands of years back, and a token is never needed that long.
  CALLBACK_TOKEN_TTL_DAYS: positiveInt.pipe(z.number().max(36_500)).default(30),
  API_TOKENS: list.optional(),
  ALLOW_UNSIGNED_CALLBACKS: bool.default(false),
  STORE_BODY: bool.default(false),
  // Express's `trust proxy`: a hop count, `true`/`false`, or a list of addresses/subnets.
  TRUST_PROXY: z.string().default('false').superRefine(checkTrustProxy),
  // SignalWire delivers callbacks from a handful of addresses, so a per-address limit must
  // leave room for a bulk send's burst: ~1000/s per address per replica.
  RATE_LIMIT_PUBLIC_PER_MINUTE: positiveInt.default(60_000),
  // Refused authentications (401/403) per address and minute past which an address's callbacks
  // without a valid per-send token are refused 429 unread, unless it authenticated one in the
  // last 10 minutes (src/http/rate-limit.ts publicAuthFailureBudget).
  RATE_LIMIT_PUBLIC_AUTH_FAILURES_PER_MINUTE: positiveInt.default(300),
  RATE_LIMIT_QUERY_PER_MINUTE: positiveInt.default(1200),
  // Above the load balancer's idle timeout for upstream connections (ingress-nginx and AWS
  // ALB: 60 s), so the service never closes a connection the balancer is about to reuse.
  HTTP_KEEP_ALIVE_TIMEOUT_MS: millis.default(65_000),
  HTTP_MAX_CONNECTIONS: positiveInt.default(4096),
  SHUTDOWN_DRAIN_MS: millis.default(10_000),
  // Unset: 5 s in production (see shutdownDelayMs), 0 elsewhere.
  SHUTDOWN_DELAY_MS: millisOrZero.optional(),
  // The whole SIGTERM → exit budget (see shutdownGraceMs).
  SHUTDOWN_GRACE_MS: millis.default(30_000),
  INGEST_BATCH_MAX: positiveInt.default(200),
  // Applies only while another batch commits. 1 ms (Node's shortest timer) measured 8 % more
  // callbacks/s than 2 ms with 32 concurrent senders: commits are short, waiting is not free.
  INGEST_BATCH_WAIT_MS: decimalNumber.pipe(z.number().min(0).max(MAX_TIMER_MS)).default(1),
  INGEST_QUEUE_MAX: positiveInt.default(5000),
  // 16 MiB of callback data: ~10,000 ordinary callbacks (so INGEST_QUEUE_MAX binds first), or
  // 256 bodies of 64 KiB instead of 5,000 (320 MB).
  INGEST_QUEUE_MAX_BYTES: positiveInt.default(16 * 1024 * 1024),
  // Trimmed like HOST: a stray space from YAML or a .env file would move the spool off its
  // volume onto the container's own layer, where acknowledged callbacks go with the pod.
  SPOOL_DIR: z.string().trim().min(1, 'must not be blank').default(DEFAULT_SPOOL_DIR),
  SIMULATOR_PORT: port.default(0),
  // Relay of the caller's own status callbacks (DESIGN §10).
  RELAY_RETRY_SCHEDULE: durations.prefault(['10s', '1m', '5m', '30m', '2h', '6h', '12h'].join(',')),
  RELAY_TIMEOUT_MS: millis.default(5_000),
  RELAY_HOST_CONCURRENCY: positiveInt.default(4),
  // Unset: loopback outside production (a local app), nothing in production.
  RELAY_ALLOWED_NETWORKS: cidrs.optional(),
  RELAY_ALLOW_HTTP: bool.default(false),
  // Reconciliation (DESIGN §11).
  // Each step is an age of the message's last event (DESIGN §11): a step no later than the one
  // before would be due the moment that one was looked up.
  RECONCILE_SCHEDULE: durations
    .refine((steps) => steps.every((step, i) => i === 0 || step > steps[i - 1]!), {
      message: 'each step must be longer than the one before (e.g. 10m,1h,6h,24h)',
    })
    .prefault('10m,1h,6h,24h'),
  // At least one lookup in 1,000 s: the pause between two is a timer, and Node fires one
  // longer than 2^31-1 ms (24.8 days) at once, which would make a tiny rate a busy loop.
  RECONCILE_RATE: decimalNumber.pipe(z.number().min(0.001)).default(5),
  SIGNALWIRE_CREDENTIALS: credentials.optional(),
  // Browser origins allowed to call /v1/* (src/http/cors.ts): scheme://host[:port], or *.
  CORS_ORIGINS: list
    .pipe(
      z.array(
        z.string().regex(
          // Any case of the scheme: http/cors.ts writes each origin as a browser does.
          /^(\*|https?:\/\/[^/\s]+)$/i,
          'each origin is scheme://host[:port] (no path), or *',
        ),
      ),
    )
    .default([]),
  // Growth (DESIGN §13): retention and a read replica. Unset: history is kept, reads go to
  // DATABASE_URL.
  RETENTION_DAYS: positiveInt.optional(),
  RELAY_KEEP_DELIVERED_DAYS: positiveInt.optional(),
  DATABASE_READ_URL: connectionString.optional(),
  // A forward proxy for SignalWire-bound traffic only (src/signalwire/egress-proxy.ts), under
  // the names curl and most tools read. The lower-case spelling wins when both are set, as
  // with curl.
  HTTPS_PROXY: proxyUrl.optional(),
  https_proxy: proxyUrl.optional(),
  HTTP_PROXY: proxyUrl.optional(),
  http_proxy: proxyUrl.optional(),
  NO_PROXY: noProxyList.optional(),
  no_proxy: noProxyList.optional(),
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
  /**
   * Per signing key, in the order of `signingKeys`, the project it is bound to
   * (`project_id:signing_key`), or null. Absent: no key is bound.
   */
  signingKeyProjects?: readonly (string | null)[];
  signalwireTimeoutMs: number;
  /** The first mints callback tokens; all verify (receipts can arrive days after the send). */
  callbackTokenSecrets: readonly string[];
  /** A token older than this is refused (a legacy token without mint time never expires). */
  callbackTokenTtlDays: number;
  apiTokens: readonly string[];
  allowUnsignedCallbacks: boolean;
  storeBody: boolean;
  trustProxy: TrustProxy;
  rateLimitPublicPerMinute: number;
  /** Refused callback authentications per client address and minute before 429s (unread). */
  rateLimitPublicAuthFailuresPerMinute: number;
  rateLimitQueryPerMinute: number;
  /** Idle keep-alive connections are closed after this (src/http/listener.ts). */
  httpKeepAliveTimeoutMs: number;
  /** Open connections per listener; more are refused at once. */
  httpMaxConnections: number;
  /** After SIGTERM, how long to wait for in-flight requests before closing connections. */
  shutdownDrainMs: number;
  /**
   * After SIGTERM, how long to keep serving with readiness failing before the listeners close:
   * Kubernetes removes the pod from its Service endpoints only after a probe or two, and the
   * load balancer keeps sending requests until then.
   */
  shutdownDelayMs: number;
  /**
   * SIGTERM → exit, everything included: SHUTDOWN_DELAY_MS, then at most SHUTDOWN_DRAIN_MS of
   * request draining, then committing what was acknowledged and replaying a non-empty spool
   * while the database allows, until this budget is spent (less a second to close). What the
   * spool still holds then stays on disk for the next process. Kubernetes'
   * terminationGracePeriodSeconds must cover the preStop hook plus this.
   */
  shutdownGraceMs: number;
  ingestBatchMax: number;
  ingestBatchWaitMs: number;
  ingestQueueMax: number;
  /** Approximate bytes of callback data waiting for the database (event-size.ts). */
  ingestQueueMaxBytes: number;
  spoolDir: string;
  simulatorPort: number;
  /** Waits before each relay retry, in ms; past the last the job is dead. */
  relayRetrySchedule: readonly number[];
  relayTimeoutMs: number;
  relayHostConcurrency: number;
  /** CIDRs a relay may connect to although private, loopback, link-local, … */
  relayAllowedNetworks: readonly string[];
  /** Plain http relays: always outside production, in production only when allowed. */
  relayAllowHttp: boolean;
  /** How old a message's last event must be for each lookup, in ms; after the last: stuck. */
  reconcileSchedule: readonly number[];
  /** Lookups per second per replica. */
  reconcileRate: number;
  /** Lower-case project id → its REST credentials for lookups; empty: reconciliation is off. */
  signalwireCredentials: ReadonlyMap<string, SignalwireCredential>;
  /** Browser origins allowed to call the query API; empty: none. */
  corsOrigins: readonly string[];
  /** Human-readable notes on the development defaults in force, for the start log. */
  defaultsInForce: readonly string[];
  // Growth (DESIGN §13).
  /** Messages whose last activity is older are removed (src/retention); undefined: kept. */
  retentionDays: number | undefined;
  /** Delivered relay jobs older than this are removed; undefined: kept. */
  relayKeepDeliveredDays: number | undefined;
  /**
   * A hot standby for the message and relay lists, the stats and the change feed
   * (createReaderDb in src/db/database.ts; src/db/standby-only.ts).
   */
  databaseReadUrl: string | undefined;
  /** HTTPS_PROXY, HTTP_PROXY, NO_PROXY: SignalWire-bound traffic only. Never logged whole. */
  egressProxy: EgressProxySettings;
}

/**
 * LOG_LEVEL for the command-line tools (migrate, stats:rebuild, spool), which read nothing
 * else of the service's settings: checked as the service checks it, so a typo is one line
 * naming the variable rather than the logger's own complaint.
 */
export function cliLogLevel(fallback: LogLevel, env: NodeJS.ProcessEnv = process.env): LogLevel {
  const value = envValue(env, 'LOG_LEVEL') ?? fallback;
  if (!(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new ConfigError([`LOG_LEVEL: must be one of ${LOG_LEVELS.join(', ')}`]);
  }
  return value as LogLevel;
}

/**
 * SPOOL_DIR for the spool command, read and checked as the service reads it: unset is the
 * default, but a blank value is refused by name — the service refuses to start with it, so
 * taking it as the default here would replay (or report) a directory no run of the service used.
 */
export function cliSpoolDir(env: NodeJS.ProcessEnv = process.env): string {
  const checked = EnvSchema.shape.SPOOL_DIR.safeParse(envValue(env, 'SPOOL_DIR'));
  if (!checked.success) {
    throw new ConfigError([
      `SPOOL_DIR: ${[...new Set(checked.error.issues.map((i) => i.message))].join('; ')}`,
    ]);
  }
  return checked.data;
}

/**
 * STORE_BODY for the spool command, which replays what a run with it on may have spooled:
 * read and checked as the service reads it, so the command stores no text the service itself
 * would not (DESIGN §4), and a typo is one line naming the variable.
 */
export function cliStoreBody(env: NodeJS.ProcessEnv = process.env): boolean {
  // Read as loadConfig reads it: empty is unset, white space dropped.
  const checked = EnvSchema.shape.STORE_BODY.safeParse(envValue(env, 'STORE_BODY'));
  if (!checked.success) {
    throw new ConfigError([
      `STORE_BODY: ${[...new Set(checked.error.issues.map((i) => i.message))].join('; ')}`,
    ]);
  }
  return checked.data;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Express compiles `trust proxy` when it is set, and throws a bare TypeError there for a list
 * entry that is no address or subnet: checked here with Express itself, so a typo is refused
 * at start by name, with what Express could not read.
 */
function checkTrustProxy(value: string, ctx: z.core.$RefinementCtx<string>): void {
  try {
    express().set('trust proxy', parseTrustProxy(value));
  } catch (error) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a hop count, true/false, or a comma-separated list of addresses, subnets or loopback/linklocal/uniquelocal (${(error as Error).message})`,
    });
  }
}

function parseTrustProxy(value: string): TrustProxy {
  const v = value.trim();
  if (v === '' || v === 'false') return false;
  if (v === 'true') return true;
  if (/^\d+$/.test(v)) return Number(v);
  return v.split(',').map((s) => s.trim());
}

/** The example Secret's placeholder (k8s/components/example-secret), in any value of a secret. */
function holdsSecretPlaceholder(value: string): boolean {
  return /REPLACE_ME/i.test(value);
}

/**
 * The ConfigMap's placeholder URLs (k8s/app/configmap.yaml): their host's first label is
 * `replace-me` (a hostname has no `_`). Only that label: a real host may contain the letters
 * (`fireplace-media.example`).
 */
function isPlaceholderUrl(value: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\/replace-me\./i.test(value.trim());
}

/**
 * The secret values the environment holds: API tokens, callback-token secrets, signing keys,
 * the API tokens of SIGNALWIRE_CREDENTIALS and the passwords of the database and proxy URLs
 * (in the userinfo or as `password=`, as written and decoded). What main.ts prints when the process
 * cannot start passes through redactSecrets: an error's message or properties can quote its
 * input (Node's ERR_INVALID_URL keeps the whole URL in `input`). Values shorter than 4
 * characters are left alone: erasing them would erase the rest of the text with them.
 */
export function secretValues(env: NodeJS.ProcessEnv = process.env): string[] {
  const items = (name: string): string[] =>
    (env[name] ?? '')
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item.length > 0);
  const values = [
    ...items('API_TOKENS'),
    ...items('CALLBACK_TOKEN_SECRET'),
    // A key bound to its project (`project_id:signing_key`) is a secret alone too.
    ...items('SIGNALWIRE_SIGNING_KEYS').flatMap((item) => [
      item,
      item.slice(item.indexOf(':') + 1).trim(),
    ]),
    ...items('SIGNALWIRE_CREDENTIALS').map((item) => item.slice(item.indexOf(':') + 1).trim()),
    ...urlPasswords(env['DATABASE_URL']),
    ...urlPasswords(env['DATABASE_READ_URL']),
    // A proxy URL may leave out its scheme (`user:pass@proxy:3128`).
    ...PROXY_VARIABLES.flatMap((name) => {
      const value = env[name];
      return urlPasswords(value && !value.includes('://') ? `http://${value}` : value);
    }),
  ];
  const found = new Set<string>();
  for (const value of values) {
    found.add(value);
    try {
      found.add(decodeURIComponent(value));
    } catch {
      // Not percent-encoded as a whole: the value as written is the one to erase.
    }
  }
  // Longest first, so that a secret containing another is erased whole.
  return [...found].filter((value) => value.length >= 4).sort((a, b) => b.length - a.length);
}

const PROXY_VARIABLES = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'] as const;

/**
 * A connection string's or proxy URL's passwords, read without a URL parser: the strings this
 * is for are the ones a parser may refuse.
 */
function urlPasswords(url: string | undefined): string[] {
  if (!url) return [];
  const passwords: string[] = [];
  const rest = url.slice(url.indexOf('://') + 3);
  // The userinfo ends at the authority's last '@', and the authority at the first '/', '?' or
  // '#': an '@' in the query (`?application_name=sw@pod-1`) is a value's own, and taking the
  // URL's last '@' made the query part of the "password", leaving the real one unredacted.
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at);
  const colon = userinfo.indexOf(':');
  if (colon !== -1) passwords.push(userinfo.slice(colon + 1));
  for (const match of url.matchAll(/[?&]password=([^&#]*)/gi)) passwords.push(match[1]!);
  return passwords;
}

/** `text` with every value of secretValues(env) replaced by `[redacted]`. */
export function redactSecrets(text: string, env: NodeJS.ProcessEnv = process.env): string {
  let redacted = text;
  for (const secret of secretValues(env)) redacted = redacted.split(secret).join('[redacted]');
  return redacted;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty is unset and white space around a value is dropped, for every variable (envValue).
  const present: Record<string, string> = {};
  for (const name of Object.keys(EnvSchema.shape)) {
    const value = envValue(env, name);
    if (value !== undefined) present[name] = value;
  }
  // Each variable on its own, so that one malformed value does not hide the other problems.
  const problems: string[] = [];
  const values: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(EnvSchema.shape)) {
    const result = (schema as z.ZodType).safeParse(present[name]);
    if (result.success) values[name] = result.data;
    else
      problems.push(
        `${name}: ${[...new Set(result.error.issues.map((i) => i.message))].join('; ')}`,
      );
  }
  // A malformed variable stays out of the checks below: it has been named already.
  const e = values as Partial<z.output<typeof EnvSchema>>;
  const isProduction = e.NODE_ENV === 'production';
  const defaults: string[] = [];
  const malformed = (name: string): boolean => name in present && !(name in values);

  // In production every development default is refused: each missing value is named.
  const requireInProduction = (name: string, isSet: boolean, note: string): void => {
    if (isSet || malformed(name)) return;
    if (isProduction) problems.push(`${name}: required when NODE_ENV=production`);
    else defaults.push(note);
  };
  requireInProduction('DATABASE_URL', !!e.DATABASE_URL, 'DATABASE_URL unset: embedded PostgreSQL');
  requireInProduction(
    'SIGNALWIRE_SPACE_URL',
    !!e.SIGNALWIRE_SPACE_URL,
    'SIGNALWIRE_SPACE_URL unset: built-in SignalWire simulator as upstream',
  );
  if (e.SIGNALWIRE_SPACE_URL) {
    requireInProduction(
      'SIGNALWIRE_SIGNING_KEYS',
      !!e.SIGNALWIRE_SIGNING_KEYS?.length,
      'SIGNALWIRE_SIGNING_KEYS unset with a real SIGNALWIRE_SPACE_URL: no signature verifies, only callbacks with a per-send token are accepted',
    );
  } else {
    requireInProduction(
      'SIGNALWIRE_SIGNING_KEYS',
      !!e.SIGNALWIRE_SIGNING_KEYS?.length,
      'SIGNALWIRE_SIGNING_KEYS unset: the simulator signing key',
    );
  }
  requireInProduction(
    'CALLBACK_TOKEN_SECRET',
    !!e.CALLBACK_TOKEN_SECRET?.length,
    'CALLBACK_TOKEN_SECRET unset: fixed development secret',
  );
  requireInProduction('API_TOKENS', !!e.API_TOKENS?.length, `API_TOKENS unset: "${DEV_API_TOKEN}"`);
  // HOST's default is every interface (DESIGN §1: what a container needs). With the published
  // development token that is the whole query API and the send proxy to anyone on the network;
  // said at start, since a laptop on a shared network is where `npm start` runs.
  const devToken = !e.API_TOKENS?.length || e.API_TOKENS.includes(DEV_API_TOKEN);
  if (!isProduction && devToken && !('HOST' in present))
    defaults.push(
      `HOST unset: listening on every interface with the API token "${DEV_API_TOKEN}" — anyone who can reach this machine can read the query API and send through the proxy; set HOST=127.0.0.1 to keep it local`,
    );
  requireInProduction(
    'PUBLIC_BASE_URL',
    !!e.PUBLIC_BASE_URL,
    `PUBLIC_BASE_URL unset: http://127.0.0.1:${e.PORT ?? 8080}`,
  );
  if (isProduction && e.ALLOW_UNSIGNED_CALLBACKS) {
    problems.push('ALLOW_UNSIGNED_CALLBACKS: must not be true when NODE_ENV=production');
  }
  if (e.ALLOW_UNSIGNED_CALLBACKS)
    defaults.push('ALLOW_UNSIGNED_CALLBACKS=true: callbacks are not authenticated');
  if (isProduction) {
    // The development values are in this source (and in a dev run's start log): set
    // explicitly, they would let anyone read the query API, mint callback tokens or sign
    // callbacks.
    const published: Array<[string, readonly string[] | undefined, string]> = [
      ['API_TOKENS', e.API_TOKENS, DEV_API_TOKEN],
      ['CALLBACK_TOKEN_SECRET', e.CALLBACK_TOKEN_SECRET, DEV_CALLBACK_TOKEN_SECRET],
      [
        'SIGNALWIRE_SIGNING_KEYS',
        e.SIGNALWIRE_SIGNING_KEYS?.map(({ key }) => key),
        SIMULATOR_SIGNING_KEY,
      ],
    ];
    for (const [name, values, development] of published) {
      if (values?.includes(development))
        problems.push(`${name}: holds the published development value; set a real one`);
    }
    // The example Secret ships placeholders; a forgotten one must stop the pod, not become a
    // working API token.
    for (const name of [
      'DATABASE_URL',
      'SIGNALWIRE_SIGNING_KEYS',
      'CALLBACK_TOKEN_SECRET',
      'API_TOKENS',
      'SIGNALWIRE_CREDENTIALS',
    ] as const) {
      // Named without its text: the value is a secret's, and erased wherever it is printed.
      if (holdsSecretPlaceholder(env[name] ?? ''))
        problems.push(
          `${name}: still holds the placeholder of the example Secret; set the real value`,
        );
    }
    // So does the ConfigMap (k8s/app/configmap.yaml), as a host: a pod started with them is
    // ready and healthy while every send's callback URL names a host SignalWire cannot reach
    // (PUBLIC_BASE_URL) or every send goes to a space that is not the team's.
    for (const name of ['PUBLIC_BASE_URL', 'SIGNALWIRE_SPACE_URL'] as const) {
      if (isPlaceholderUrl(env[name] ?? ''))
        problems.push(`${name}: still holds the replace-me placeholder of k8s/app/configmap.yaml`);
    }
    // Every wrong guess at the query API costs an attacker one request and nothing else (no
    // lockout: one would let the same attacker lock out every dashboard behind a shared
    // address), so a token must be too long to guess online, as a callback secret must be to
    // guess offline.
    // The development value and the placeholder are already refused above, by their own names.
    const refusedAbove = (token: string) =>
      token === DEV_API_TOKEN || holdsSecretPlaceholder(token);
    if (e.API_TOKENS?.some((token) => !refusedAbove(token) && token.length < 16))
      problems.push('API_TOKENS: each token needs at least 16 characters');
  }
  // A client sends its token in an Authorization header: `Bearer <token>`, read up to the first
  // white space, one byte per character (latin1). A token with white space or a control
  // character in it, or a character beyond U+00FF, could never be presented, and every
  // dashboard would get 401 with nothing naming the cause.
  const presentable = (token: string): boolean =>
    [...token].every((char) => {
      const code = char.codePointAt(0)!;
      return code > 0x20 && code !== 0x7f && code <= 0xff && !/\s/u.test(char);
    });
  if (e.API_TOKENS?.some((token) => !presentable(token)))
    problems.push(
      'API_TOKENS: a token may hold no white space, no control character and no character beyond U+00FF: a client could never present it',
    );
  for (const secret of e.CALLBACK_TOKEN_SECRET ?? []) {
    // A short secret makes the per-send token guessable offline.
    // (The placeholder is refused in production by its own name, above.)
    if (secret.length < 16 && !(isProduction && holdsSecretPlaceholder(secret)))
      problems.push('CALLBACK_TOKEN_SECRET: each secret needs at least 16 characters');
  }
  const shutdownDelayMs = e.SHUTDOWN_DELAY_MS ?? (isProduction ? 5_000 : 0);
  // One port for both listeners would fail at bind with "in use", as if another program held it.
  // A port picked at start (0) cannot be in the default PUBLIC_BASE_URL: SignalWire would be
  // told to call back at port 0, and every callback would be lost.
  if (e.PORT === 0 && !e.PUBLIC_BASE_URL) {
    problems.push(
      'PUBLIC_BASE_URL: must be set when PORT=0 (the default, http://127.0.0.1:$PORT, cannot name a port picked at start)',
    );
  }
  if (e.PORT !== undefined && e.PORT !== 0 && e.PORT === e.INTERNAL_PORT) {
    problems.push(
      `INTERNAL_PORT: must differ from PORT (${e.PORT}): the public and internal listeners are separate`,
    );
  }
  // The built-in simulator (no SIGNALWIRE_SPACE_URL; never in production) is the process's
  // third listener, bound first: on the port of another, that one would fail "in use" instead.
  const simulatorStarts = !isProduction && !('SIGNALWIRE_SPACE_URL' in present);
  const sharedWith =
    simulatorStarts && e.SIMULATOR_PORT !== undefined && e.SIMULATOR_PORT !== 0
      ? (['PORT', 'INTERNAL_PORT'] as const).find((name) => e[name] === e.SIMULATOR_PORT)
      : undefined;
  if (sharedWith) {
    problems.push(
      `SIMULATOR_PORT: must differ from ${sharedWith} (${e.SIMULATOR_PORT}): the built-in simulator listens beside the service's listeners`,
    );
  }
  if (
    e.SHUTDOWN_GRACE_MS !== undefined &&
    e.SHUTDOWN_DRAIN_MS !== undefined &&
    shutdownDelayMs + e.SHUTDOWN_DRAIN_MS >= e.SHUTDOWN_GRACE_MS
  ) {
    problems.push(
      `SHUTDOWN_GRACE_MS: must exceed SHUTDOWN_DELAY_MS + SHUTDOWN_DRAIN_MS (${shutdownDelayMs} + ${e.SHUTDOWN_DRAIN_MS} ms), leaving time to commit what was acknowledged`,
    );
  }
  if (e.RELAY_ALLOWED_NETWORKS === undefined && !isProduction)
    defaults.push('RELAY_ALLOWED_NETWORKS unset: relays may reach loopback (127.0.0.0/8, ::1)');
  if (problems.length > 0) throw new ConfigError(problems);
  // Every variable parsed (a problem would have been thrown): the defaults fill the rest.
  const v = e as z.output<typeof EnvSchema>;
  // Without keys, the simulator's while it is upstream (unbound), none with a real space.
  const signingKeys: readonly SigningKey[] = v.SIGNALWIRE_SIGNING_KEYS?.length
    ? v.SIGNALWIRE_SIGNING_KEYS
    : v.SIGNALWIRE_SPACE_URL
      ? []
      : [{ key: SIMULATOR_SIGNING_KEY, project: null }];

  return Object.freeze({
    nodeEnv: v.NODE_ENV,
    isProduction,
    port: v.PORT,
    internalPort: v.INTERNAL_PORT,
    host: v.HOST,
    logLevel: v.LOG_LEVEL,
    databaseUrl: v.DATABASE_URL,
    databasePoolMax: v.DATABASE_POOL_MAX,
    publicBaseUrl: v.PUBLIC_BASE_URL ?? `http://127.0.0.1:${v.PORT}`,
    signalwireSpaceUrl: v.SIGNALWIRE_SPACE_URL,
    signalwireProjectIds: Object.freeze(v.SIGNALWIRE_PROJECT_IDS),
    signingKeys: Object.freeze(signingKeys.map(({ key }) => key)),
    signingKeyProjects: Object.freeze(signingKeys.map(({ project }) => project)),
    signalwireTimeoutMs: v.SIGNALWIRE_TIMEOUT_MS,
    callbackTokenSecrets: Object.freeze(
      v.CALLBACK_TOKEN_SECRET?.length ? v.CALLBACK_TOKEN_SECRET : [DEV_CALLBACK_TOKEN_SECRET],
    ),
    callbackTokenTtlDays: v.CALLBACK_TOKEN_TTL_DAYS,
    apiTokens: Object.freeze(v.API_TOKENS?.length ? v.API_TOKENS : [DEV_API_TOKEN]),
    allowUnsignedCallbacks: v.ALLOW_UNSIGNED_CALLBACKS,
    storeBody: v.STORE_BODY,
    trustProxy: parseTrustProxy(v.TRUST_PROXY),
    rateLimitPublicPerMinute: v.RATE_LIMIT_PUBLIC_PER_MINUTE,
    rateLimitPublicAuthFailuresPerMinute: v.RATE_LIMIT_PUBLIC_AUTH_FAILURES_PER_MINUTE,
    rateLimitQueryPerMinute: v.RATE_LIMIT_QUERY_PER_MINUTE,
    httpKeepAliveTimeoutMs: v.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    httpMaxConnections: v.HTTP_MAX_CONNECTIONS,
    shutdownDrainMs: v.SHUTDOWN_DRAIN_MS,
    shutdownDelayMs,
    shutdownGraceMs: v.SHUTDOWN_GRACE_MS,
    ingestBatchMax: v.INGEST_BATCH_MAX,
    ingestBatchWaitMs: v.INGEST_BATCH_WAIT_MS,
    ingestQueueMax: v.INGEST_QUEUE_MAX,
    ingestQueueMaxBytes: v.INGEST_QUEUE_MAX_BYTES,
    spoolDir: v.SPOOL_DIR,
    simulatorPort: v.SIMULATOR_PORT,
    relayRetrySchedule: Object.freeze(v.RELAY_RETRY_SCHEDULE),
    relayTimeoutMs: v.RELAY_TIMEOUT_MS,
    relayHostConcurrency: v.RELAY_HOST_CONCURRENCY,
    relayAllowedNetworks: Object.freeze(
      v.RELAY_ALLOWED_NETWORKS ?? (isProduction ? [] : [...LOOPBACK_NETWORKS]),
    ),
    relayAllowHttp: !isProduction || v.RELAY_ALLOW_HTTP,
    reconcileSchedule: Object.freeze(v.RECONCILE_SCHEDULE),
    reconcileRate: v.RECONCILE_RATE,
    signalwireCredentials: v.SIGNALWIRE_CREDENTIALS ?? new Map<string, SignalwireCredential>(),
    corsOrigins: Object.freeze(v.CORS_ORIGINS),
    defaultsInForce: Object.freeze(defaults),
    retentionDays: v.RETENTION_DAYS,
    relayKeepDeliveredDays: v.RELAY_KEEP_DELIVERED_DAYS,
    databaseReadUrl: v.DATABASE_READ_URL,
    egressProxy: Object.freeze({
      httpsProxy: v.https_proxy ?? v.HTTPS_PROXY,
      httpProxy: v.http_proxy ?? v.HTTP_PROXY,
      noProxy: Object.freeze(v.no_proxy ?? v.NO_PROXY ?? []),
    }),
  });
}

/**
 * The projects the configuration names, lower case: SIGNALWIRE_PROJECT_IDS, the projects of
 * SIGNALWIRE_CREDENTIALS and those signing keys are bound to. None or one: the deployment
 * serves one project, as far as it says (signing.ts relaySigningKey).
 */
export function namedProjects(
  config: Pick<Config, 'signalwireProjectIds' | 'signalwireCredentials' | 'signingKeyProjects'>,
): ReadonlySet<string> {
  const projects = new Set<string>(config.signalwireProjectIds);
  for (const project of config.signalwireCredentials.keys()) projects.add(project);
  for (const project of config.signingKeyProjects ?? [])
    if (project !== null) projects.add(project);
  return projects;
}
