import { statfs } from 'node:fs/promises';
import type { StatsFs } from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CallbackOutcome } from '../callbacks/callback-outcome';
import { SIGNATURE_FAILURES } from '../callbacks/signature';
import type { SignatureFailure } from '../callbacks/signature';
import type { StatusTransition } from '../messages/record-events';
import type { Api } from '../messages/statuses';
import type { UpstreamStatus } from '../proxy/signalwire-client';

/** The pg Pool counters read on every scrape (a `pg.Pool` satisfies it). */
export interface PoolStats {
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
}

export interface MetricsOptions {
  /** Database pool whose use is reported on scrape. */
  pool?: PoolStats;
  /** Events accepted but not yet in PostgreSQL (the ingest spool); reported on scrape. */
  spoolDepth?: () => number;
  /** Events the spool keeps as dead letters (they wait for an operator); reported on scrape. */
  spoolDeadLetters?: () => number;
  /** The spool's directory: its volume's free and total bytes are reported on scrape. */
  spoolDir?: string;
  /** Node.js process metrics (CPU, memory, event loop, GC). Default: on. */
  processMetrics?: boolean;
}

/**
 * `public`: per client address; `public_auth_failures`: an address past its refused
 * authentications (callbacks without a valid token, unread); `query`: per API token.
 */
export type RateLimiterName = 'public' | 'public_auth_failures' | 'query';

/**
 * Who sent a request, as far as the service can tell: `authenticated` when its credentials
 * verified (a callback's token or signature, the query API's bearer token) or, answered before
 * they were read, when its address authenticated a callback lately; `unverified` otherwise.
 * Anyone on the internet can reach the public listener: the alerts on SignalWire's callbacks
 * read only `authenticated`, so an anonymous client's refused requests neither page anyone nor
 * dilute SignalWire's 5xx. Two values, whatever the traffic.
 */
export type Sender = 'authenticated' | 'unverified';

/**
 * The service's Prometheus metrics on a registry of their own: no global default registry, so
 * a test (or one process) can build several apps side by side. Every recording method is a
 * plain function that can be handed around as a hook.
 */
export interface Metrics {
  readonly registry: Registry;
  /** Every callback's outcome (wired to callbackEndpoint's `onCallback`: CallbackDeps). */
  onCallback(api: Api, status: string, outcome: CallbackOutcome): void;
  onSignatureFailure(reason: SignatureFailure): void;
  /** A callback authenticated by its signature (one without a valid per-send token). */
  onSignatureVerified(): void;
  /** Callback request received → answered (200 = durably acknowledged), in seconds. */
  observeIngest(api: Api, code: number, sender: Sender, seconds: number): void;
  /** One send-proxy call to SignalWire: api flavour, upstream status, seconds it took. */
  observeUpstream(api: Api, status: UpstreamStatus, seconds: number): void;
  /** A message's current status moved (wired to recordEvents' onTransition). */
  observeTransition(transition: StatusTransition): void;
  onRateLimited(limiter: RateLimiterName, sender: Sender): void;
  /** SignalWire accepted a send the proxy could not record (the send proxy's onUnrecorded). */
  onProxyUnrecorded(api: Api): void;
  /** A spooled event the write refused at replay (the group-commit recorder's onReplayRefused). */
  onSpoolReplayRefused(outcome: string): void;
  /**
   * The service answered a request with a 5xx of its own, by listener and sender: the error
   * handler's, and the send proxy's own 502/504/500 (proxy-http.ts fail()), not SignalWire's 5xx
   * it relays. On the internal listener the sender is always `authenticated`: it is reached
   * only from inside the cluster (DESIGN §1), never by an anonymous internet client.
   */
  onServerError(listener: ListenerName, sender: Sender): void;
  /**
   * What /readyz just answered: sets the readiness gauge, counts changes (flapping), and what it
   * found of the database (absent while draining, when it is not asked).
   */
  observeReadiness(ready: boolean, database?: 'ok' | 'unreachable'): void;
}

export type ListenerName = 'public' | 'internal';

export const METRIC_PREFIX = 'sw_status_';

// Callbacks are answered in milliseconds; SignalWire gives up after about 5 s.
const INGEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
// The send proxy waits on SignalWire's API, bounded by SIGNALWIRE_TIMEOUT_MS (10 s default).
const UPSTREAM_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// queued→sent takes seconds, sent→delivered up to hours (handset off, carrier retries).
const TRANSITION_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600];

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const name = (suffix: string): string => `${METRIC_PREFIX}${suffix}`;

  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  const callbacks = new Counter({
    name: name('callbacks_total'),
    help: 'Callbacks received, by API flavour, canonical status and outcome (recorded, duplicate, refused_<reason>)',
    labelNames: ['api', 'status', 'outcome'] as const,
    registers,
  });
  const signatureFailures = new Counter({
    name: name('callback_signature_failures_total'),
    help: 'Callbacks whose signature did not verify, by reason',
    labelNames: ['reason'] as const,
    registers,
  });
  // From 0: SwStatusSignatureFailures reads increase(), which counts nothing for a series'
  // first sample — without this, the first refusals after a rotation went uncounted.
  for (const reason of SIGNATURE_FAILURES) signatureFailures.inc({ reason }, 0);
  // The denominator of a signature failure rate: most callbacks come by their per-send token
  // and are never signature-checked, so a rate against all callbacks would hide a rotated key.
  const signaturesVerified = new Counter({
    name: name('callback_signatures_verified_total'),
    help: 'Callbacks authenticated by their signature (those without a valid per-send token)',
    registers,
  });
  const ingest = new Histogram({
    name: name('ingest_duration_seconds'),
    help: 'Callback request received to answered; code 200 means durably committed; sender authenticated (token or signature verified, or its address lately) or unverified',
    labelNames: ['api', 'code', 'sender'] as const,
    buckets: INGEST_BUCKETS,
    registers,
  });
  const upstream = new Histogram({
    name: name('upstream_request_duration_seconds'),
    help: 'Send-proxy calls to SignalWire, by API flavour and upstream status (or timeout/unreachable)',
    labelNames: ['api', 'status'] as const,
    buckets: UPSTREAM_BUCKETS,
    registers,
  });
  const transitions = new Histogram({
    name: name('status_transition_seconds'),
    help: "Time between a message's consecutive current statuses (e.g. queued→sent, sent→delivered)",
    labelNames: ['api', 'from', 'to'] as const,
    buckets: TRANSITION_BUCKETS,
    registers,
  });
  const rateLimited = new Counter({
    name: name('rate_limited_total'),
    help: 'Requests refused with 429, by limiter (public: per client address; public_auth_failures: an address past its refused authentications; query: per API token) and sender (authenticated: an address that authenticated a callback lately, or an API token; unverified)',
    labelNames: ['limiter', 'sender'] as const,
    registers,
  });
  // From 0: the alert on SignalWire's 429s reads the authenticated series, there before any.
  for (const sender of ['authenticated', 'unverified'] as const) {
    rateLimited.inc({ limiter: 'public', sender }, 0);
  }

  const unrecorded = new Counter({
    name: name('proxy_unrecorded_sends_total'),
    help: 'Sends SignalWire accepted that the proxy could not record (their callbacks still will)',
    labelNames: ['api'] as const,
    registers,
  });
  // Rare, and each one matters: served from 0 so the dashboard's panel has a series to show.
  for (const api of ['cxml', 'native'] as const) unrecorded.inc({ api }, 0);

  // For the dashboards and alerts in k8s/components/monitoring: every series starts at 0, so a
  // rate() over them exists before the first error and an alert on them is never silently
  // empty. `sender` as on the callback metrics: anyone can reach the public listener, and an
  // anonymous client's own 503s (a large body refused for the budget it holds) must not page
  // anyone; SwStatusServerErrors reads sender="authenticated". The internal listener is reached
  // only from inside the cluster: its 5xx are all `authenticated`.
  const serverErrors = new Counter({
    name: name('http_server_errors_total'),
    help: 'Answers with a 5xx status of the service itself, by listener and sender (authenticated: token or signature verified, or its address lately, and every internal-listener request; unverified): the send proxy’s own 502/504 (SignalWire unreachable, no answer in time) included; not SignalWire’s 5xx it relays, nor a shutting-down replica’s 503 to a send',
    labelNames: ['listener', 'sender'] as const,
    registers,
  });
  serverErrors.inc({ listener: 'public', sender: 'authenticated' }, 0);
  serverErrors.inc({ listener: 'public', sender: 'unverified' }, 0);
  serverErrors.inc({ listener: 'internal', sender: 'authenticated' }, 0);
  const ready = new Gauge({
    name: name('ready'),
    help: 'What /readyz last answered: 1 ready, 0 not (draining, database or schema not usable)',
    registers,
  });
  const readinessChanges = new Counter({
    name: name('readiness_changes_total'),
    help: 'Times /readyz changed its answer (ready ↔ not ready): flapping shows here even between scrapes',
    registers,
  });
  let lastReady: boolean | undefined;
  // A pod stays ready through a database outage (its spool acknowledges callbacks), so
  // sw_status_ready cannot tell one: this can, for an alert that does not wait for callbacks
  // to pile up in the spool, and is told by every probe, traffic or not.
  const databaseUp = new Gauge({
    name: name('database_up'),
    help: 'What /readyz last found of the primary database: 1 reachable, 0 unreachable',
    registers,
  });
  // Unknown (not 0) until the first /readyz: an alert on 0 must not fire on a pod not yet probed.
  databaseUp.set(Number.NaN);

  // A live callback's refusal is answered (403) and counted in callbacks_total; one acknowledged
  // during an outage is refused only when the spool replays it, long after its answer.
  const replayRefused = new Counter({
    name: name('spool_replay_refused_total'),
    help: 'Spooled events refused when replayed (not stored, not dead-lettered), by outcome (e.g. refused_token)',
    labelNames: ['outcome'] as const,
    registers,
  });

  const { pool, spoolDepth, spoolDeadLetters, spoolDir } = options;
  if (pool) {
    // Read on scrape: the pool's counters are always current, no timer needed.
    scrapedGauge(
      registers,
      name('db_pool_clients'),
      'Database connections open',
      () => pool.totalCount,
    );
    scrapedGauge(
      registers,
      name('db_pool_idle_clients'),
      'Database connections idle',
      () => pool.idleCount,
    );
    scrapedGauge(
      registers,
      name('db_pool_waiting_requests'),
      'Queries waiting for a free database connection',
      () => pool.waitingCount,
    );
  }
  if (spoolDepth) {
    scrapedGauge(
      registers,
      name('spool_depth'),
      'Events spooled, not yet in PostgreSQL',
      spoolDepth,
    );
  }
  if (spoolDir) registerSpoolVolume(registers, name, spoolDir);
  if (spoolDeadLetters) {
    scrapedGauge(
      registers,
      name('spool_dead_letters'),
      'Spooled events PostgreSQL refuses for good, kept for an operator to requeue',
      spoolDeadLetters,
    );
  }

  return {
    registry,
    onCallback(api, status, outcome) {
      callbacks.inc({ api, status, outcome });
    },
    onSignatureFailure(reason) {
      signatureFailures.inc({ reason });
    },
    onSignatureVerified() {
      signaturesVerified.inc();
    },
    observeIngest(api, code, sender, seconds) {
      ingest.observe({ api, code: String(code), sender }, seconds);
    },
    observeUpstream(api, status, seconds) {
      upstream.observe({ api, status: String(status) }, seconds);
    },
    observeTransition({ api, from, to, seconds }) {
      transitions.observe({ api, from, to }, seconds);
    },
    onRateLimited(limiter, sender) {
      rateLimited.inc({ limiter, sender });
    },
    onProxyUnrecorded(api) {
      unrecorded.inc({ api });
    },
    onSpoolReplayRefused(outcome) {
      replayRefused.inc({ outcome });
    },
    onServerError(listener, sender) {
      serverErrors.inc({ listener, sender });
    },
    observeReadiness(isReady, database) {
      ready.set(isReady ? 1 : 0);
      if (database) databaseUp.set(database === 'ok' ? 1 : 0);
      if (lastReady !== undefined && lastReady !== isReady) readinessChanges.inc();
      lastReady = isReady;
    },
  };
}

/**
 * The spool volume's room, read on scrape (statfs): an outage long enough fills it — a spooled
 * callback takes about 1.3 kB, a 1Gi claim lasts about 28 minutes at 500 callbacks/s — and a
 * full volume refuses callbacks (503). The depth alone does not say how close that is. A
 * directory that cannot be read is NaN (unknown, as the relay's gauges before their first
 * look), never 0 bytes nor a failed scrape.
 */
function registerSpoolVolume(
  registers: Registry[],
  name: (suffix: string) => string,
  dir: string,
): void {
  const volumeGauge = (suffix: string, help: string, read: (s: StatsFs) => number) =>
    new Gauge({
      name: name(suffix),
      help,
      registers,
      async collect() {
        const stats = await statfs(dir).catch(() => null);
        this.set(stats ? read(stats) : NaN);
      },
    });
  volumeGauge(
    'spool_volume_available_bytes',
    'Bytes the outage spool may still write on its volume (as an unprivileged user)',
    (stats) => stats.bavail * stats.bsize,
  );
  volumeGauge(
    'spool_volume_size_bytes',
    'Size of the outage spool’s volume, in bytes',
    (stats) => stats.blocks * stats.bsize,
  );
}

function scrapedGauge(
  registers: Registry[],
  metricName: string,
  help: string,
  read: () => number,
): void {
  new Gauge({
    name: metricName,
    help,
    registers,
    collect() {
      this.set(read());
    },
  });
}

/**
 * The query API's read gate (src/db/read-gate.ts), read on scrape: reads holding a database
 * connection, and reads waiting in the process for one. Waiting reads that keep climbing mean
 * the dashboards ask more than a quarter of the pool can answer: 503s follow after 5 s.
 */
export function registerQueryReadMetrics(
  registry: Registry,
  gate: { readonly running: number; readonly waiting: number },
): void {
  // One set per registry: a second internal app on the same metrics (a test) reuses the first.
  if (registry.getSingleMetric(`${METRIC_PREFIX}query_reads_running`)) return;
  scrapedGauge(
    [registry],
    `${METRIC_PREFIX}query_reads_running`,
    'Query API reads (lists, messages, stats, relays) holding a database connection',
    () => gate.running,
  );
  scrapedGauge(
    [registry],
    `${METRIC_PREFIX}query_reads_waiting`,
    'Query API reads waiting in the process for their turn (a quarter of DATABASE_POOL_MAX run at once)',
    () => gate.waiting,
  );
}
