import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import { recordEvents } from '../../src/messages/record-events';
import type { LookupResult } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { startTestSweep } from '../reconcile/support';

/**
 * The sweep's last lookup and retention can meet: with RETENTION_DAYS=1 and the default
 * RECONCILE_SCHEDULE (last step at 24 h), a message not final is due for its last lookup when
 * it expires. A lookup's answer for a message retention removed meanwhile is left alone
 * (reconcile-worker.ts): it must not create the message anew from the lookup alone, even when
 * the removal commits between the sweep's look at the message and its write.
 */

const PROJECT = 'p-retention';
const DAY = 86_400_000;
let database: TestDatabase;
let sweep: ReconcileWorker | undefined;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterEach(async () => {
  await sweep?.stop();
  sweep = undefined;
});
afterAll(() => database.destroy());

test('When retention removes a message while the sweep records its lookup, then the lookup does not create it anew', async () => {
  const id = randomUUID();
  const old = new Date(Date.now() - 2 * DAY);
  await recordEvents(database.db, [
    statusEvent('sent', { messageId: id, api: 'native', projectId: PROJECT, receivedAt: old }),
  ]);

  const retention = createDb(database.url, 1);
  let step: Promise<number> | undefined;
  let commit: () => void = () => {};
  try {
    sweep = startTestSweep({
      db: database.db,
      lookup: {
        async lookup(): Promise<LookupResult> {
          // Retention's step has removed the message, not yet committed: the sweep still sees
          // it, and its write waits for the step, which commits while it waits.
          const held = new Promise<void>((resolve) => (commit = resolve));
          step = retention.db.transaction().execute(async (trx) => {
            const removed = await removeExpiredMessages(trx, new Date(Date.now() - DAY), 10);
            await held;
            return removed.messages;
          });
          await new Promise((resolve) => setTimeout(resolve, 300));
          setTimeout(() => commit(), 500);
          return { kind: 'found', answer: { id, project_id: PROJECT, status: 'delivered' } };
        },
      },
      projects: [PROJECT],
    });
    await eventually(async () => step !== undefined, 5_000);
    expect(await step).toBe(1);
    // The sweep's write has had its turn after the step.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await sweep.stop();
    sweep = undefined;
  } finally {
    commit();
    await retention.db.destroy();
  }

  const { rows } = await sql<{ n: number }>`
    SELECT (SELECT count(*) FROM messages WHERE id = ${id})
         + (SELECT count(*) FROM status_events WHERE message_id = ${id}) AS n`.execute(database.db);
  expect(rows).toEqual([{ n: 0 }]);
});
