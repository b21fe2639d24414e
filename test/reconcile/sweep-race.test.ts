import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import type { LookupResult } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { startTestSweep } from './support';

/**
 * A lookup takes time (up to SIGNALWIRE_TIMEOUT_MS): the callback SignalWire was late with can
 * land while the sweep waits for the answer. The lookup's answer must then be judged against
 * the message as it is, not as it was when the sweep claimed it (DESIGN §10/§11: a relay is
 * never sent for a duplicate).
 */

const PROJECT = 'p-race';
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

/** A native callback as the receiver normalizes it, with its bytes kept for the relay. */
function nativeCallback(id: string, status: string, at: Date): StatusEvent {
  const body = { id, project_id: PROJECT, status, timestamp: at.toISOString() };
  return statusEvent(status, {
    messageId: id,
    api: 'native',
    projectId: PROJECT,
    providerTimestamp: new Date(Math.floor(at.getTime() / 1000) * 1000),
    receivedAt: at,
    raw: body,
    relay: {
      method: 'POST',
      contentType: 'application/json',
      body: Buffer.from(JSON.stringify(body)).toString('base64'),
      keyRef: null,
    },
  });
}

test('When the final callback lands while the lookup is under way, then the lookup records no second event and no second relay', async () => {
  const id = randomUUID();
  const minuteAgo = new Date(Date.now() - 60_000);
  await recordEvents(database.db, [
    statusEvent('queued', {
      messageId: id,
      api: 'native',
      source: 'proxy',
      projectId: PROJECT,
      receivedAt: minuteAgo,
      send: {
        ref: null,
        kind: 'sms',
        clientStatusCallback: 'https://app.example.com/status',
        body: null,
      },
    }),
    nativeCallback(id, 'sent', minuteAgo),
  ]);

  let looked = 0;
  sweep = startTestSweep({
    db: database.db,
    lookup: {
      async lookup(): Promise<LookupResult> {
        looked++;
        // SignalWire's delivered callback arrives while this lookup waits for its answer.
        await recordEvents(database.db, [nativeCallback(id, 'delivered', new Date())]);
        return { kind: 'found', answer: { id, project_id: PROJECT, status: 'delivered' } };
      },
    },
    projects: [PROJECT],
  });
  await eventually(async () => {
    const row = await database.db
      .selectFrom('messages')
      .select('sweep_checked_at')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    return row.sweep_checked_at !== null;
  }, 5_000);
  expect(looked).toBe(1);

  const { rows } = await sql<{ source: string; status: string }>`
    SELECT source, status FROM status_events WHERE message_id = ${id} ORDER BY seq`.execute(
    database.db,
  );
  expect(rows).toEqual([
    { source: 'proxy', status: 'queued' },
    { source: 'callback', status: 'sent' },
    { source: 'callback', status: 'delivered' },
  ]);
  const jobs = await database.db
    .selectFrom('relay_jobs')
    .select('id')
    .where('message_id', '=', id)
    .execute();
  // sent and delivered, each once: the app is not told `delivered` twice.
  expect(jobs).toHaveLength(2);
});
