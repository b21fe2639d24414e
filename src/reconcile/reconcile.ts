import type { Registry } from 'prom-client';
import type { Config } from '../config';
import type { Db } from '../db/database';
import type { Logger } from '../logger';
import type { RecordOptions } from '../messages/record-events';
import { createMessageLookup } from './lookup-client';
import { createReconcileMetrics } from './reconcile-metrics';
import { createReconcileWorker } from './reconcile-worker';
import type { ReconcileWorker, ReconcileWorkerOptions } from './reconcile-worker';

/**
 * The sweep as main.ts (and tests) build it (DESIGN §11), or undefined — and a start log
 * line saying so — when SIGNALWIRE_CREDENTIALS names no project: lookups need credentials.
 */
export function createReconciler(deps: {
  config: Config;
  db: Db;
  logger: Logger;
  /** SIGNALWIRE_SPACE_URL, or the built-in simulator's URL. */
  baseUrl: string;
  /** The forward proxy to SIGNALWIRE_SPACE_URL (signalwire/egress-proxy.ts); undefined: direct. */
  egressProxy?: URL | undefined;
  registry?: Registry;
  recordOptions?: RecordOptions;
  tuning?: Pick<ReconcileWorkerOptions, 'pollMs' | 'statsEveryMs'>;
  paused?: () => boolean;
}): ReconcileWorker | undefined {
  const { config } = deps;
  const logger = deps.logger.child({ component: 'reconcile' });
  const projects = [...config.signalwireCredentials.keys()];
  if (projects.length === 0) {
    logger.warn(
      'reconciliation off: SIGNALWIRE_CREDENTIALS is not set, so messages whose last callback was lost stay where they are',
    );
    return undefined;
  }
  let stats: ReconcileWorker['stats'] = () => null;
  const metrics = deps.registry ? createReconcileMetrics(deps.registry, () => stats()) : undefined;
  const worker = createReconcileWorker({
    db: deps.db,
    logger,
    lookup: createMessageLookup({
      baseUrl: deps.baseUrl,
      credentials: config.signalwireCredentials,
      timeoutMs: config.signalwireTimeoutMs,
      proxy: deps.egressProxy,
    }),
    schedule: config.reconcileSchedule,
    rate: config.reconcileRate,
    lookupTimeoutMs: config.signalwireTimeoutMs,
    projects,
    storeBody: config.storeBody,
    recordOptions: deps.recordOptions,
    onLookup: metrics?.onLookup,
    ...(deps.paused && { paused: deps.paused }),
    ...deps.tuning,
  });
  stats = worker.stats;
  return worker;
}
