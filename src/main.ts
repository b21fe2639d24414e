import { createInternalApp, createPublicApp } from './app';
import type { AppDeps } from './app';
import { ConfigError, loadConfig } from './config';
import { createDb } from './db/database';
import { startEmbeddedPostgres } from './db/embedded-postgres';
import { migrateReachable } from './db/migrate';
import type { Lifecycle } from './http/health.routes';
import { createIngestRecorder, openServiceSpool } from './ingest/ingest';
import { createLogger } from './logger';
import { createMetrics } from './metrics/metrics';
import { invokedAs } from './process/invoked-as';
import { address, describeListenError, listen } from './process/listen';
import { shutdownOnSignals } from './process/shutdown';
import { StartupError } from './process/startup-error';
import { createSignalWireClient, signalWireClientFor } from './proxy/signalwire-client';
import { startSimulator } from './simulator/simulator';

/** Process entry: config → logger → db → apps → listen on both ports; SIGTERM drains. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
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
  const { db, pool } = createDb(config.databaseUrl ?? embedded!.url, config.databasePoolMax);
  // A database restart must not kill the process (and with it the spool's acknowledgements).
  if (!config.isProduction) {
    const applied = await migrateReachable(db, config.databaseUrl);
    if (applied.length > 0) logger.info({ applied }, 'migrations applied');
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

  const lifecycle: Lifecycle = { draining: false };
  const metrics = createMetrics({
    pool,
    spoolDepth: spool.depth,
    spoolDeadLetters: spool.deadLetters,
  });
  const recorder = createIngestRecorder({
    config,
    db,
    logger,
    spool,
    recordOptions: { onTransition: metrics.observeTransition },
  });
  lifecycle.ingest = recorder;
  const deps: AppDeps = { config, logger, db, recorder, lifecycle, metrics, signalwire };
  const publicServer = await listen(createPublicApp(deps), config.port, config.host, 'PORT');
  const internalServer = await listen(
    createInternalApp(deps),
    config.internalPort,
    config.host,
    'INTERNAL_PORT',
  );
  logger.info(
    { public: address(publicServer), internal: address(internalServer), spool: spool.dir },
    'sw-status listening',
  );

  // SIGTERM/SIGINT: readiness off, drain, commit, replay the spool while there is time, exit 0
  // within SHUTDOWN_GRACE_MS (process/shutdown.ts). After the listeners: in-flight sends have
  // had their answer.
  shutdownOnSignals({
    config,
    logger,
    lifecycle,
    servers: [publicServer, internalServer],
    recorder,
    spoolDir: spool.dir,
    closers: [
      async () => simulator?.close(),
      () => db.destroy(),
      async () => embedded?.stop(),
      async () => logger.info({ pool_total: pool.totalCount }, 'pools closed'),
    ],
    exit: (code) => process.exit(code),
  });
}

main().catch((error: unknown) => {
  // A configuration or start-up error is an operator's to fix: print it plainly, no stack.
  if (error instanceof ConfigError || error instanceof StartupError) console.error(error.message);
  else console.error(error);
  process.exit(1);
});
