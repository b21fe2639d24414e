import { inspect } from 'node:util';
import { createInternalApp, createPublicApp } from './app';
import type { AppDeps } from './app';
import { ConfigError, loadConfig, redactSecrets } from './config';
import { createDb, createReaderDb } from './db/database';
import { createInFlight } from './process/in-flight';
import { createDatabaseReadiness, writesFor } from './db/database-readiness';
import { startFeedEpochChecks } from './feed/feed-epoch';
import { createFeedSignal } from './feed/feed-signal';
import { startEmbeddedPostgres } from './db/embedded-postgres';
import { knownMigrations, migrateReachable } from './db/migrate';
import { warnWhereSchemasOpenToAll } from './db/schema-privileges';
import { schemaProblem } from './db/schema-version';
import type { Lifecycle } from './http/health.routes';
import { createIngestRecorder, openServiceSpool } from './ingest/ingest';
import { createLogger } from './logger';
import { createMetrics } from './metrics/metrics';
import { turnOffPretenuring } from './process/heap-tuning';
import { invokedAs } from './process/invoked-as';
import { address, describeListenError, listen } from './process/listen';
import { shutdownOnSignals } from './process/shutdown';
import { StartupError } from './process/startup-error';
import { trapStartupSignals } from './process/startup-signals';
import { createSignalWireClient, signalWireClientFor } from './proxy/signalwire-client';
import { createReconciler } from './reconcile/reconcile';
import { SHUTDOWN_STOP_WAIT_MS } from './reconcile/reconcile-worker';
import { signalwireEgressProxy } from './signalwire/egress-proxy';
import { createRedactionRetries } from './proxy/redaction-retries';
import { createRelay } from './relay/relay';
import { createRetention } from './retention/retention';
import { startSimulator } from './simulator/simulator';
import { startStatsCompactor } from './stats/stats-compactor';

/** Process entry: config → logger → db → apps → listen on both ports; SIGTERM drains. */
async function main(): Promise<void> {
  // Before the first request: see heap-tuning.ts for what it spares the heap.
  turnOffPretenuring();
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  // Before anything that takes time: as PID 1 the process would ignore SIGTERM until then.
  const startup = trapStartupSignals(logger);
  for (const note of config.defaultsInForce) logger.warn(`development default in force: ${note}`);

  // Who holds the embedded data and the spool, for a second process refused them.
  const holder = {
    command: invokedAs(),
    details: { port: config.port, internal_port: config.internalPort },
  };
  // First the spool: whatever an earlier process left on it is ours to replay, and a live
  // holder stops this process before anything is started.
  const spool = await openServiceSpool({ dir: config.spoolDir, logger, ...holder });
  const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres(logger, holder);
  startup.onAbort(() => embedded?.stop());
  const databaseUrl = config.databaseUrl ?? embedded!.url;
  const { db, pool } = createDb(databaseUrl, config.databasePoolMax);
  // DATABASE_READ_URL (DESIGN §13): a hot standby for lists, stats and the feed.
  const reader = config.databaseReadUrl
    ? createReaderDb(config.databaseReadUrl, config.databasePoolMax, db, { logger })
    : undefined;
  // A database restart must not kill the process (and with it the spool's acknowledgements).
  if (!config.isProduction) {
    const applied = await migrateReachable(db, config.databaseUrl, { logger });
    if (applied.length > 0) logger.info({ applied }, 'migrations applied');
  } else {
    // Migrating says so too; in production the migration Job's log is easy to miss. Advisory:
    // a database not reachable yet is the readiness check's to report.
    void warnWhereSchemasOpenToAll(db, logger).catch(() => undefined);
  }

  // SIGNALWIRE_SPACE_URL unset (refused in production): the built-in simulator is the send
  // proxy's upstream. It signs with the first SIGNALWIRE_SIGNING_KEYS key (by default
  // SIMULATOR_SIGNING_KEY), so its callbacks verify like SignalWire's would.
  const simulator = config.signalwireSpaceUrl
    ? undefined
    : await startSimulator({
        port: config.simulatorPort,
        host: '127.0.0.1',
        signingKey: config.signingKeys[0],
        logger: logger.child({ component: 'simulator' }),
      }).catch((error: NodeJS.ErrnoException) => {
        throw describeListenError(error, config.simulatorPort, '127.0.0.1', 'SIMULATOR_PORT');
      });
  if (simulator) logger.info({ url: simulator.url }, 'built-in SignalWire simulator listening');
  const signalwire = simulator
    ? createSignalWireClient({ baseUrl: simulator.url, timeoutMs: config.signalwireTimeoutMs })
    : signalWireClientFor(config);
  // HTTPS_PROXY/HTTP_PROXY/NO_PROXY: sends and lookups, never relays (egress-proxy.ts). Only
  // the proxy's origin is logged: its URL may carry a password.
  const egressProxy = signalwireEgressProxy(config);
  if (egressProxy) {
    logger.info({ proxy: egressProxy.origin }, 'SignalWire is reached through a forward proxy');
  }

  // Not ready until the database has been reached once with a schema this release runs on.
  const known = await knownMigrations();
  // Not ready either while DATABASE_URL's user lacks a privilege this replica's work needs
  // (retention's deletes only when RETENTION_DAYS or RELAY_KEEP_DELIVERED_DAYS is set).
  const database = createDatabaseReadiness({
    db,
    logger,
    known,
    writes: writesFor({
      retentionDays: config.retentionDays,
      relayKeepDeliveredDays: config.relayKeepDeliveredDays,
    }),
  });
  database.start();
  const lifecycle: Lifecycle = { draining: false, database, sends: createInFlight() };
  const metrics = createMetrics({
    pool,
    spoolDepth: spool.depth,
    spoolDeadLetters: spool.deadLetters,
    spoolDir: spool.dir,
  });
  // Background work (STYLE.md): the relay of callers' own callbacks and the sweep. Like the
  // pod's traffic, it stops while the schema is not one this release may write to (a newer
  // release's breaking migration, or this one's not applied yet).
  const paused = (): boolean => !database.schemaSuitable();
  const relay = createRelay({ config, db, logger, registry: metrics.registry, paused });
  // Wakes the change feed's long-polls; every writer of events passes its `committed` as
  // recordEvents' onCommitted (src/feed/feed-signal.ts).
  const feedSignal = createFeedSignal({ connectionString: databaseUrl, logger });
  const recordOptions = {
    onTransition: metrics.observeTransition,
    onRelaysEnqueued: relay.wake,
    onCommitted: feedSignal.committed,
  };
  const reconciler = createReconciler({
    config,
    db,
    logger,
    baseUrl: simulator?.url ?? config.signalwireSpaceUrl ?? '',
    egressProxy,
    registry: metrics.registry,
    recordOptions,
    paused,
  });
  const recorder = createIngestRecorder({
    config,
    db,
    logger,
    spool,
    recordOptions,
    onReplayRefused: metrics.onSpoolReplayRefused,
    // A pod may start before the migration Job ran: the spool waits for the schema.
    schemaProblem: () => schemaProblem(db, known),
  });
  lifecycle.ingest = recorder;
  const statsCompactor = startStatsCompactor({ db, logger, paused });
  // The change feed's reset after a failover or restore that sent transaction ids back: on the
  // primary (db), every replica (src/feed/feed-epoch.ts).
  const feedEpoch = startFeedEpochChecks({
    db,
    logger: logger.child({ component: 'feed-epoch' }),
    paused,
  });
  // RETENTION_DAYS / RELAY_KEEP_DELIVERED_DAYS (DESIGN §13); undefined when neither is set.
  const retention = createRetention({
    db,
    logger: logger.child({ component: 'retention' }),
    registry: metrics.registry,
    options: {
      retentionDays: config.retentionDays,
      relayKeepDeliveredDays: config.relayKeepDeliveredDays,
      callbackTokenTtlDays: config.callbackTokenTtlDays,
      paused,
    },
  });
  // Redactions the store could not apply at once, retried in the background for 15 minutes
  // (src/proxy/redaction-retries.ts); memory only: stopped with the listeners below.
  const redactionRetries = createRedactionRetries({
    db,
    logger: logger.child({ component: 'redaction-retries' }),
  });
  const deps: AppDeps = {
    config,
    logger,
    db,
    readDb: reader?.db,
    readLagSeconds: reader?.lagSeconds,
    recorder,
    lifecycle,
    metrics,
    signalwire,
    relay,
    feedSignal,
    redactionRetries,
  };
  const publicServer = await listen(createPublicApp(deps), config, 'PORT', logger);
  const internalServer = await listen(createInternalApp(deps), config, 'INTERNAL_PORT', logger);
  relay.start();
  reconciler?.start();
  retention?.start();
  logger.info(
    { public: address(publicServer), internal: address(internalServer), spool: spool.dir },
    'sw-status listening',
  );

  // SIGTERM/SIGINT: readiness off, drain, commit, replay the spool while there is time, exit 0
  // within SHUTDOWN_GRACE_MS (process/shutdown.ts). After the listeners: in-flight sends have
  // had their answer.
  startup.complete(); // the handlers below take over
  shutdownOnSignals({
    config,
    logger,
    lifecycle,
    servers: [publicServer, internalServer],
    recorder,
    spoolDir: spool.dir,
    // Long-polls answer now, so their clients move to a replica that stays.
    onDraining: [() => feedSignal.close()],
    // No new lookups once the listeners are closed: their results would only add to the drain.
    // A lookup held up (SignalWire slow, its write waiting on a row another session holds) is
    // abandoned after a short wait: the drain and the spool's replay must come.
    beforeDrain: [
      async () => reconciler?.stop({ waitMs: SHUTDOWN_STOP_WAIT_MS }),
      async () => retention?.stop(),
      // No request asks a redaction any more; one still waiting for its retry keeps its text
      // (said at error level with the message ids, for the operator to repeat).
      () => redactionRetries.stop(),
    ],
    closers: [
      // After the ingest drain: the relays of the last committed callbacks may still go out.
      () => relay.stop(),
      () => statsCompactor.stop(),
      () => feedEpoch.stop(),
      async () => simulator?.close(),
      () => db.destroy(),
      async () => reader?.db.destroy(),
      async () => embedded?.stop(),
      async () => logger.info({ pool_total: pool.totalCount }, 'pools closed'),
    ],
    exit: (code) => process.exit(code),
  });
}

main().catch((error: unknown) => {
  // A configuration or start-up error is an operator's to fix: print it plainly, no stack.
  // Anything else in full, but without the configured secrets: an error's message or
  // properties may quote them (Node's ERR_INVALID_URL keeps a whole DATABASE_URL in `input`).
  const known = error instanceof ConfigError || error instanceof StartupError;
  console.error(redactSecrets(known ? error.message : inspect(error)));
  process.exit(1);
});
