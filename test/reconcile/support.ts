import { randomUUID } from 'node:crypto';
import type { Db } from '../../src/db/database';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import type { Api } from '../../src/messages/statuses';
import { createReconcileWorker } from '../../src/reconcile/reconcile-worker';
import type { ReconcileWorker, ReconcileWorkerOptions } from '../../src/reconcile/reconcile-worker';
import { statusEvent } from '../factories';

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

/**
 * A message of `projectId` whose last event, `sent`, is `ageMs` old (a minute: due for both of
 * startTestSweep's steps); its id.
 */
export async function sentMessage(
  db: Db,
  {
    projectId,
    api = 'cxml',
    ageMs = 60_000,
    id = randomUUID(),
  }: { projectId: string; api?: Api; ageMs?: number; id?: string },
): Promise<string> {
  await recordEvents(db, [
    statusEvent('sent', {
      messageId: id,
      api,
      projectId,
      receivedAt: new Date(Date.now() - ageMs),
    }),
  ]);
  return id;
}
