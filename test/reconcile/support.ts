import { randomUUID } from 'node:crypto';
import type { KyselyPlugin, RawNode } from 'kysely';
import type { Db } from '../../src/db/database';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import type { Api } from '../../src/messages/statuses';
import { lookupEvent } from '../../src/reconcile/lookup-event';
import { createReconcileWorker } from '../../src/reconcile/reconcile-worker';
import type { ReconcileWorker, ReconcileWorkerOptions } from '../../src/reconcile/reconcile-worker';
import { statusEvent } from '../factories';
import { rowsRead } from '../helpers/explain';
import { seedProxiedMessage } from '../relay/support';
import type { PlanNode } from '../helpers/explain';

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

/**
 * What the first statement `run` sends reads of `messages`, from EXPLAIN (ANALYZE, BUFFERS) of
 * it as it runs, rolled back: the rows its scans of messages and its indexes returned or
 * filtered out, times their loops, and the buffers the whole statement touched.
 */
export async function readByStatement(
  db: Db,
  run: (db: Db) => Promise<unknown>,
): Promise<{ rows: number; buffers: number }> {
  let plan: PlanNode | undefined;
  const explain: KyselyPlugin = {
    transformQuery({ node }) {
      if (node.kind !== 'RawNode' || plan !== undefined) return node;
      const raw = node as RawNode;
      const [first, ...rest] = raw.sqlFragments;
      return {
        ...raw,
        sqlFragments: [`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${first}`, ...rest],
      };
    },
    transformResult({ result }) {
      const explained = (result.rows[0] as Record<string, unknown> | undefined)?.['QUERY PLAN'];
      if (explained && plan === undefined) plan = (explained as Array<{ Plan: PlanNode }>)[0]!.Plan;
      return Promise.resolve(result);
    },
  };
  await db
    .transaction()
    .execute(async (trx) => {
      // What `run` makes of an EXPLAIN's answer does not matter: only the plan is kept.
      await run(trx.withPlugin(explain)).catch(() => undefined);
      throw new Error('rollback');
    })
    .catch(() => undefined);
  if (!plan) throw new Error('no statement explained');
  console.log(
    JSON.stringify(
      plan,
      (k, v) =>
        [
          'Output',
          'Shared Dirtied Blocks',
          'Shared Written Blocks',
          'Local Hit Blocks',
          'Local Read Blocks',
          'Local Dirtied Blocks',
          'Local Written Blocks',
          'Temp Read Blocks',
          'Temp Written Blocks',
          'Startup Cost',
          'Plan Width',
          'Async Capable',
          'Parallel Aware',
        ].includes(k)
          ? undefined
          : v,
      1,
    ),
  );
  return {
    rows: rowsRead(plan),
    buffers: plan['Shared Hit Blocks']! + plan['Shared Read Blocks']!,
  };
}

/**
 * A message sent through the proxy with an app callback, then the sweep's lookup of it answered
 * `answer`, recorded (and relayed) as the worker records it; the message's id.
 */
export async function lookedUpProxied(
  db: Db,
  api: Api,
  projectId: string,
  answer: Record<string, unknown>,
): Promise<string> {
  const id = await seedProxiedMessage(
    db,
    api,
    'http://127.0.0.1:9/app-status',
    randomUUID(),
    projectId,
  );
  const looked = lookupEvent(
    { id, api, projectId, status: 'queued', errorCode: null },
    { ...answer, [api === 'cxml' ? 'sid' : 'id']: id },
    new Date(),
    false,
  );
  await recordEvents(db, [looked!]);
  return id;
}

/**
 * What the app was (or will be) told about a message, in relay order: each relay's status and
 * error code read from its stored payload — a native callback is relayed as JSON, a compatibility
 * one as a form (`MessageStatus`, `ErrorCode`).
 */
export async function relayedPayloads(
  db: Db,
  messageId: string,
): Promise<{ status: string | null; code: string | null }[]> {
  const jobs = await db
    .selectFrom('relay_jobs')
    .select(['payload'])
    .where('message_id', '=', messageId)
    .orderBy('id')
    .execute();
  return jobs.map((job) => {
    const text = Buffer.from(job.payload!).toString('utf8');
    if (text.startsWith('{')) {
      const json = JSON.parse(text) as { status: string; error_code?: string | number | null };
      return {
        status: json.status,
        code: json.error_code == null ? null : String(json.error_code),
      };
    }
    const form = new URLSearchParams(text);
    return { status: form.get('MessageStatus'), code: form.get('ErrorCode') };
  });
}
