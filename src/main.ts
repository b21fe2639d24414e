import type { Server } from 'node:http';
import { createInternalApp, createPublicApp } from './app';
import type { AppDeps } from './app';
import { ConfigError, loadConfig } from './config';
import { createDb } from './db/database';
import { createFeedSignal } from './feed/feed-signal';
import { startEmbeddedPostgres } from './db/embedded-postgres';
import { migrateToLatest } from './db/migrate';
import { createFastServer } from './http/fast-server';
import type { Lifecycle } from './http/health.routes';
import { createIngestRecorder } from './ingest/ingest';
import { openSpool } from './ingest/spool';
import { createLogger } from './logger';
import { createMetrics } from './metrics/metrics';
import { createSignalWireClient, signalWireClientFor } from './proxy/signalwire-client';
import { startSimulator } from './simulator/simulator';
import { startStatsCompactor } from './stats/stats-compactor';

/** Process entry: config → logger → db → apps → listen on both ports; SIGTERM drains. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  for (const note of config.defaultsInForce) logger.warn(`development default in force: ${note}`);

  const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres(logger);
  const databaseUrl = config.databaseUrl ?? embedded!.url;
  const { db, pool } = createDb(databaseUrl, config.databasePoolMax);
  // A database restart must not kill the process (and with it the spool's acknowledgements).
  if (!config.isProduction) {
    const applied = await migrateToLatest(db);
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
      });
  if (simulator) logger.info({ url: simulator.url }, 'built-in SignalWire simulator listening');
  const signalwire = simulator
    ? createSignalWireClient({ baseUrl: simulator.url, timeoutMs: config.signalwireTimeoutMs })
    : signalWireClientFor(config);

  const lifecycle: Lifecycle = { draining: false };
  const spool = await openSpool({ dir: config.spoolDir, logger });
  const metrics = createMetrics({ pool, spoolDepth: spool.depth });
  // Wakes the change feed's long-polls; every writer of events passes its `committed` as
  // recordEvents' onCommitted (src/feed/feed-signal.ts).
  const feedSignal = createFeedSignal({ connectionString: databaseUrl, logger });
  const recorder = createIngestRecorder({
    config,
    db,
    logger,
    spool,
    recordOptions: { onTransition: metrics.observeTransition, onCommitted: feedSignal.committed },
  });
  lifecycle.ingest = recorder;
  const statsCompactor = startStatsCompactor({ db, logger });
  const deps: AppDeps = { config, logger, db, recorder, lifecycle, metrics, signalwire };
  deps.feedSignal = feedSignal;
  const publicServer = await listen(createPublicApp(deps), config.port, config.host);
  const internalServer = await listen(createInternalApp(deps), config.internalPort, config.host);
  logger.info(
    { public: address(publicServer), internal: address(internalServer) },
    'sw-status listening',
  );

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    lifecycle.draining = true;
    // Long-polls answer now, so their clients move to a replica that stays.
    await feedSignal.close();
    // Readiness now fails, but the load balancer still routes here until the endpoints
    // update: keep serving for SHUTDOWN_DELAY_MS, then stop accepting connections.
    logger.info({ signal, delay_ms: config.shutdownDelayMs }, 'shutting down: readiness off');
    await new Promise((resolve) => setTimeout(resolve, config.shutdownDelayMs));
    logger.info({ drain_ms: config.shutdownDrainMs }, 'closing listeners, draining requests');
    const drained = await Promise.all([
      closeServer(publicServer, config.shutdownDrainMs),
      closeServer(internalServer, config.shutdownDrainMs),
    ]);
    if (drained.includes(false)) logger.warn('drain deadline passed: open connections were cut');
    // After the listeners: in-flight sends have had their answer. Pending callbacks are dropped.
    await simulator?.close();
    await recorder.drain();
    await statsCompactor.stop();
    await db.destroy();
    await embedded?.stop();
    logger.info({ pool_total: pool.totalCount }, 'stopped');
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      shutdown(signal).then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

function listen(
  app: ReturnType<typeof createPublicApp>,
  port: number,
  host: string,
): Promise<Server> {
  // The fast server spares Express its per-request prototype swap (src/http/fast-server.ts).
  const server = createFastServer(app);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/**
 * Stops accepting connections and lets in-flight requests finish; idle keep-alive connections
 * are closed so close() can return. Resolves false when connections had to be cut after
 * `deadlineMs` (a client trickling a body must not hold the pod past its grace period).
 */
function closeServer(server: Server, deadlineMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const deadline = setTimeout(() => {
      server.closeAllConnections();
      resolve(false);
    }, deadlineMs);
    server.close(() => {
      clearTimeout(deadline);
      resolve(true);
    });
    server.closeIdleConnections();
  });
}

function address(server: Server): string {
  const info = server.address();
  return typeof info === 'object' && info ? `${info.address}:${info.port}` : String(info);
}

main().catch((error: unknown) => {
  // A configuration error is an operator's mistake: print it plainly, no stack trace.
  if (error instanceof ConfigError) console.error(error.message);
  else console.error(error);
  process.exit(1);
});
