import { readFileSync } from 'node:fs';
import path from 'node:path';
import express from 'express';
import type { Express, Request, RequestHandler } from 'express';
import { callbackEndpoint } from './callbacks/callbacks.routes';
import type { CallbackDeps } from './callbacks/callbacks.routes';
import type { Config } from './config';
import type { Db } from './db/database';
import { createReadGate } from './db/read-gate';
import { registerReadReplicaMetrics } from './db/read-replica-metrics';
import { READ_STATEMENT_TIMEOUT_MS } from './db/read-timeout';
import { registerFeedMetrics } from './feed/feed-metrics';
import { feedRoutes } from './feed/feed.routes';
import { createFeedSignal } from './feed/feed-signal';
import type { FeedSignal } from './feed/feed-signal';
import { bearerAuth } from './http/bearer-auth';
import { chain } from './http/chain';
import { queryApiCors } from './http/cors';
import { errorHandler, notFoundHandler } from './http/error-handler';
import { boundForwardedFor } from './http/forwarded-for';
import { documentedRoutes, methodNotAllowed } from './http/method-not-allowed';
import { privateAnswers } from './http/etag';
import { healthRoutes } from './http/health.routes';
import type { Lifecycle } from './http/health.routes';
import { parseQueryString } from './http/query-parser';
import { publicAuthFailureBudget, publicRateLimit, queryRateLimit } from './http/rate-limit';
import { requestId } from './http/request-id';
import { requestLog } from './http/request-log';
import { createLogBudget } from './http/log-budget';
import type { LogBudget } from './http/log-budget';
import { securityHeaders } from './http/security-headers';
import type { Logger } from './logger';
import type { EventRecorder } from './messages/event-recorder';
import { messageRoutes } from './messages/messages.routes';
import type { Api } from './messages/statuses';
import type { ListenerName, Metrics, Sender } from './metrics/metrics';
import { ingestLatency, metricsRoutes } from './metrics/metrics.routes';
import { registerQueryReadMetrics } from './metrics/metrics';
import { buildApiDocument } from './openapi/api-document';
import { openApiRoutes } from './openapi/openapi.routes';
import { pageRoutes } from './page/page.routes';
import { createAcceptedCredentials, recordingAccepted } from './proxy/accepted-credentials';
import { createApplicationCallbacks } from './proxy/application-callback';
import { proxyRoutes } from './proxy/proxy.routes';
import { relayRoutes } from './relay/relays.routes';
import type { ProxyDeps } from './proxy/proxy.service';
import type { RedactionRetries } from './proxy/redaction-retries';
import { statsRoutes } from './stats/stats.routes';
import { signalWireClientFor } from './proxy/signalwire-client';
import type { SignalWireClient } from './proxy/signalwire-client';

/** Everything the apps need, built once by main.ts (or by a test) and passed in. */
export interface AppDeps {
  config: Config;
  logger: Logger;
  db: Db;
  /**
   * DATABASE_READ_URL's pool (DESIGN §13): lists, stats and the feed read there. Absent: db.
   * Writes, token binding and single-message reads stay on `db`.
   */
  readDb?: Db;
  /** With readDb: how far behind the primary it was at its last check (db/database.ts). */
  readLagSeconds?: () => number | undefined;
  recorder: EventRecorder;
  lifecycle: Lifecycle;
  clock?: () => Date;
  callbackHooks?: Pick<CallbackDeps, 'onCallback' | 'onSignatureFailure'>;
  /** Prometheus metrics on their own registry; served at /metrics on the internal listener. */
  metrics?: Metrics;
  /**
   * The send proxy's upstream. Absent: a client for SIGNALWIRE_SPACE_URL. main.ts passes the
   * in-process simulator's when that is unset; tests pass fakes.
   */
  signalwire?: SignalWireClient;
  proxyHooks?: Pick<ProxyDeps, 'onUpstream' | 'onUnrecorded'>;
  /** The relay worker, woken when a dead relay is retried through the API. */
  relay?: { wake(): void };
  /**
   * Wakes the change feed's long-polls; main.ts wires its `committed` to recordEvents'
   * onCommitted. Absent: one that only polls.
   */
  feedSignal?: FeedSignal;
  /**
   * Retries the redactions the store could not apply at once (src/proxy/redaction-retries.ts);
   * whoever builds the deps stops it when the app closes. Absent: such a redaction is only
   * logged.
   */
  redactionRetries?: RedactionRetries;
}

const SERVICE_VERSION = (
  JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

/**
 * An app with what every request gets (request id, log line, security headers, the drain's
 * Connection: close) and the health routes. `first` runs right after the former, in the same
 * Express layer: the public listener's callbacks, answered there without going through the
 * router's other layers.
 */
function baseApp(deps: AppDeps, logBudget: LogBudget, first?: RequestHandler): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', deps.config.trustProxy);
  app.set('query parser', parseQueryString);
  app.use(
    chain(
      requestId(),
      // Before anything reads req.ip (the public rate limit).
      boundForwardedFor(),
      requestLog(deps.logger, logBudget),
      securityHeaders(),
      (_req, res, next) => {
        // While draining, keep-alive clients are told to reconnect: their next request then
        // goes to a replica that is still in the load balancer.
        if (deps.lifecycle.draining) res.setHeader('Connection', 'close');
        next();
      },
      ...(first ? [first] : []),
    ),
  );
  app.use(healthRoutes({ ...deps, onReadiness: deps.metrics?.observeReadiness }));
  return app;
}

/** `senderOf`: who sent a request answered 5xx, for http_server_errors_total's `sender`. */
function finish(
  app: Express,
  deps: AppDeps,
  listener: ListenerName,
  senderOf: (req: Request) => Sender,
): Express {
  app.use(notFoundHandler());
  app.use(
    errorHandler(deps.logger, (_status, req) =>
      deps.metrics?.onServerError(listener, senderOf(req)),
    ),
  );
  return app;
}

/** Public listener: SignalWire's callbacks and health only (DESIGN §1). */
export function createPublicApp(deps: AppDeps): Express {
  const { metrics } = deps;
  // Told of every callback's credentials, and of the addresses that authenticated lately: who
  // sent a request, for the metrics' `sender` (the alerts read SignalWire's traffic only).
  const authFailures = publicAuthFailureBudget({
    perMinute: deps.config.rateLimitPublicAuthFailuresPerMinute,
    logger: deps.logger,
    onLimited: (req) => metrics?.onRateLimited('public_auth_failures', authFailures.sender(req)),
  });
  // Health probes are never limited; callbacks and everything else on this listener are.
  const limit = publicRateLimit({
    perMinute: deps.config.rateLimitPublicPerMinute,
    logger: deps.logger,
    onLimited: (req) => metrics?.onRateLimited('public', authFailures.sender(req)),
  });
  // The log lines an anonymous client can cause (refusals, 4xx), so many a minute (log-budget.ts).
  const logBudget = createLogBudget(deps.logger);
  const callbacks = callbackEndpoint({
    ...deps,
    authFailures,
    logBudget,
    before: () => limit,
    ...(metrics && {
      measure: (api: Api) => ingestLatency(metrics, api, (req) => authFailures.sender(req)),
    }),
    onCallback: (api, status, outcome) => {
      metrics?.onCallback(api, status, outcome);
      deps.callbackHooks?.onCallback?.(api, status, outcome);
    },
    onSignatureFailure: (reason) => {
      metrics?.onSignatureFailure(reason);
      deps.callbackHooks?.onSignatureFailure?.(reason);
    },
    onSignatureVerified: () => metrics?.onSignatureVerified(),
  });
  const app = baseApp(deps, logBudget, callbacks);
  // A callback's answer is never cached or revalidated: no ETag (a hash per response).
  app.set('etag', false);
  app.use(limit);
  // An anonymous client's 503s (a large body refused for the budget it holds) are its own, apart
  // from SignalWire's: SwStatusServerErrors reads sender="authenticated".
  return finish(app, deps, 'public', (req) => authFailures.sender(req));
}

/** Internal listener: the send proxy, the query API and metrics. */
export function createInternalApp(deps: AppDeps): Express {
  const app = baseApp(deps, createLogBudget(deps.logger));
  // No automatic ETag (a hash per response): the query API and the status page set their own
  // and answer their 304s; everything else here (health, metrics, the document) is never
  // revalidated, and its documented operations declare no 304.
  app.set('etag', false);
  const { metrics } = deps;
  if (metrics) app.use(metricsRoutes({ metrics }));
  const document = buildApiDocument(SERVICE_VERSION);
  app.use(openApiRoutes({ document }));
  // The status page (GET /); it reads the query API below.
  app.use(pageRoutes(deps));
  // Every answer SignalWire gives this app's calls says whether it took their credentials.
  const acceptedCredentials = createAcceptedCredentials();
  const signalwire = recordingAccepted(
    deps.signalwire ?? signalWireClientFor(deps.config),
    acceptedCredentials,
  );
  app.use(
    proxyRoutes({
      ...deps,
      metrics,
      signalwire,
      acceptedCredentials,
      applications: createApplicationCallbacks(signalwire, {
        credentials: deps.config.signalwireCredentials,
      }),
      onUpstream: (api, status, seconds) => {
        metrics?.observeUpstream(api, status, seconds);
        deps.proxyHooks?.onUpstream?.(api, status, seconds);
      },
      onUnrecorded: (api) => {
        metrics?.onProxyUnrecorded(api);
        deps.proxyHooks?.onUnrecorded?.(api);
      },
    }),
  );
  const cors = queryApiCors(deps.config.corsOrigins);
  if (cors) app.use('/v1', cors);
  app.use(
    '/v1',
    privateAnswers(),
    bearerAuth(deps.config.apiTokens),
    queryRateLimit({
      perMinute: deps.config.rateLimitQueryPerMinute,
      logger: deps.logger,
      // Mounted after bearerAuth: a valid API token.
      onLimited: () => metrics?.onRateLimited('query', 'authenticated'),
    }),
  );
  // A quarter of the pool for the lists, messages, stats and relays, another for the feed's
  // pages (below): the rest stays for the callbacks' commits however many dashboards ask.
  // With DATABASE_READ_URL the replica's reads (lists, stats, relays) get a quarter of its pool
  // and the single message, read from the primary, a quarter of the primary's: reads waiting
  // on a replica that stopped answering would otherwise take every turn from the one read that
  // must show a caller its own write (DESIGN §13).
  const gate = () =>
    createReadGate({
      concurrency: quarterOfPool(deps.config),
      maxWaitMs: READ_STATEMENT_TIMEOUT_MS,
    });
  const reads = gate();
  const primaryReads = deps.readDb ? gate() : reads;
  if (metrics) {
    registerQueryReadMetrics(
      metrics.registry,
      primaryReads === reads
        ? reads
        : {
            get running() {
              return reads.running + primaryReads.running;
            },
            get waiting() {
              return reads.waiting + primaryReads.waiting;
            },
          },
    );
  }
  app.use(messageRoutes({ ...deps, reads, primaryReads, storeBody: deps.config.storeBody }));
  app.use(
    relayRoutes({
      db: deps.db,
      readDb: deps.readDb,
      reads,
      primaryReads,
      onRetried: () => deps.relay?.wake(),
    }),
  );
  const feedSignal = deps.feedSignal ?? createFeedSignal({ logger: deps.logger });
  if (metrics) registerFeedMetrics(metrics.registry, { db: deps.db, signal: feedSignal });
  if (metrics && deps.readDb && deps.readLagSeconds) {
    registerReadReplicaMetrics(metrics.registry, {
      readDb: deps.readDb,
      lagSeconds: deps.readLagSeconds,
    });
  }
  const readDb = deps.readDb ?? deps.db;
  app.use(
    feedRoutes({
      db: readDb,
      signal: feedSignal,
      secrets: deps.config.callbackTokenSecrets,
      concurrentReads: quarterOfPool(deps.config),
    }),
  );
  app.use(statsRoutes({ db: readDb, clock: deps.clock, reads }));
  // Last: a documented /v1 path asked with a method it does not take.
  app.use(methodNotAllowed(documentedRoutes(document, '/v1')));
  // Reached only from inside the cluster (DESIGN §1): no anonymous internet client.
  return finish(app, deps, 'internal', () => 'authenticated');
}

function quarterOfPool(config: Config): number {
  return Math.max(1, Math.floor(config.databasePoolMax / 4));
}
