import { createLogger } from '../../src/logger';
import { createReconcileWorker } from '../../src/reconcile/reconcile-worker';
import type { ReconcileWorker, ReconcileWorkerOptions } from '../../src/reconcile/reconcile-worker';

/**
 * A sweep as the tests run it, started: two short steps (a message whose last event is a
 * minute old is due for both), a rate that does not hold a test back, a quick poll, no bodies.
 * Stop it with `stop()`; `options` overrides any of these.
 */
export function startTestSweep(
  options: Pick<ReconcileWorkerOptions, 'db' | 'lookup' | 'projects'> &
    Partial<ReconcileWorkerOptions>,
): ReconcileWorker {
  const worker = createReconcileWorker({
    logger: createLogger('silent'),
    schedule: [50, 100],
    rate: 100,
    storeBody: false,
    pollMs: 20,
    ...options,
  });
  worker.start();
  return worker;
}
