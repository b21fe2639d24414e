import { createPublicApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { createDb } from '../../src/db/database';
import { createFastServer } from '../../src/http/fast-server';
import { createLogger } from '../../src/logger';
import { directRecorder } from '../../src/messages/event-recorder';
import { createMetrics } from '../../src/metrics/metrics';

/**
 * (b1) sw-status's public app exactly as main.ts builds it — same middleware, same fast
 * server, same store — but recording each callback in its own transaction (directRecorder)
 * instead of group commit: the difference to (b) is group commit alone.
 */
const config = loadConfig();
const logger = createLogger(config.logLevel);
const { db, pool } = createDb(config.databaseUrl!, config.databasePoolMax);
const metrics = createMetrics({ pool });
const recorder = directRecorder(db, { onTransition: metrics.observeTransition });
const app = createPublicApp({
  config,
  logger,
  db,
  recorder,
  lifecycle: { draining: false },
  metrics,
});
const server = createFastServer(app).listen(config.port, '127.0.0.1', () =>
  console.log('listening'),
);
process.on('SIGTERM', () => server.close(() => void db.destroy().then(() => process.exit(0))));
