import type { Server } from 'node:http';
import { createInternalApp, createPublicApp } from './app';
import type { AppDeps } from './app';
import { ConfigError, loadConfig } from './config';
import { createDb } from './db/database';
import { startEmbeddedPostgres } from './db/embedded-postgres';
import { migrateToLatest } from './db/migrate';
import type { Lifecycle } from './http/health.routes';
import { createLogger } from './logger';
import { directRecorder } from './messages/event-recorder';

/** Process entry: config → logger → db → apps → listen on both ports; SIGTERM drains. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  for (const note of config.defaultsInForce) logger.warn(`development default in force: ${note}`);

  const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres(logger);
  const { db, pool } = createDb(config.databaseUrl ?? embedded!.url, config.databasePoolMax);
  if (!config.isProduction) {
    const applied = await migrateToLatest(db);
    if (applied.length > 0) logger.info({ applied }, 'migrations applied');
  }

  const lifecycle: Lifecycle = { draining: false };
  const recorder = directRecorder(db);
  const deps: AppDeps = { config, logger, db, recorder, lifecycle };
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
    logger.info({ signal }, 'shutting down: readiness off, draining');
    lifecycle.draining = true;
    // In-flight requests finish; idle keep-alive connections are closed so close() returns.
    await Promise.all([closeServer(publicServer), closeServer(internalServer)]);
    await recorder.drain();
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

function listen(app: ReturnType<typeof createPublicApp>, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (error?: Error) => (error ? reject(error) : resolve(server)));
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
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
