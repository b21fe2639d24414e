import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { recordEvents } from '../../src/messages/record-events';
import type { LookupResult } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { startTestSweep } from './support';

/**
 * A lookup's answer is the provider's JSON, and JSON can hold a NUL character (`\u0000`), which
 * PostgreSQL stores neither in text nor in jsonb. A callback with one is refused with a 400
 * (SignalWire stops), but the sweep has nobody to refuse: when recording such an answer failed,
 * the lookup counted as not made, the lease ran out and the message was looked up again and
 * again, never advancing its schedule nor becoming stuck (DESIGN §11: not retried in a loop).
 * What the answer says is recorded, without the characters that cannot be stored.
 */

const PROJECT = 'p-unstorable';
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

test('When a lookup answer holds a NUL character, then what it says is recorded without it and the sweep moves on', async () => {
  const id = randomUUID();
  await recordEvents(database.db, [
    statusEvent('sent', {
      messageId: id,
      api: 'cxml',
      projectId: PROJECT,
      receivedAt: new Date(Date.now() - 60_000),
    }),
  ]);

  let looked = 0;
  sweep = startTestSweep({
    db: database.db,
    lookup: {
      async lookup(): Promise<LookupResult> {
        looked++;
        return {
          kind: 'found',
          answer: {
            sid: id,
            account_sid: PROJECT,
            status: 'undelivered',
            error_code: '30003',
            error_message: 'Unreachable\u0000 handset',
            'x\u0000': ['\u0000'],
          },
        };
      },
    },
    projects: [PROJECT],
  });
  const message = await eventually(async () => {
    const row = await database.db
      .selectFrom('messages')
      .select(['status', 'error_code', 'error_message', 'sweep_checked_at'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    return row.sweep_checked_at !== null && row;
  }, 5_000);
  expect(looked).toBe(1);
  expect(message).toMatchObject({
    status: 'undelivered',
    error_code: '30003',
    error_message: 'Unreachable handset',
  });
  const { rows } = await sql<{ source: string; status: string; raw: unknown }>`
    SELECT source, status, raw FROM status_events WHERE message_id = ${id} ORDER BY seq`.execute(
    database.db,
  );
  expect(rows.map(({ source, status }) => ({ source, status }))).toEqual([
    { source: 'callback', status: 'sent' },
    { source: 'reconcile', status: 'undelivered' },
  ]);
  expect(rows[1]!.raw).toMatchObject({ error_message: 'Unreachable handset', x: [''] });
});
