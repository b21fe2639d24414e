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
 * land while the sweep waits for the answer, or between the sweep's reading of the message and
 * its write. The lookup's answer must then be judged against the message as it is when written,
 * not as it was when the sweep claimed or read it (DESIGN §10/§11: a relay is never sent for a
 * duplicate).
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

/** A native message sent through the proxy a minute ago, SignalWire's `sent` callback in. */
async function sentMessage(): Promise<string> {
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
  return id;
}

/** Once the sweep has looked the message up: its history, and how many relay jobs it has. */
async function afterTheSweep(id: string): Promise<{ history: unknown[]; relays: number }> {
  await eventually(async () => {
    const row = await database.db
      .selectFrom('messages')
      .select('sweep_checked_at')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    return row.sweep_checked_at !== null;
  }, 5_000);
  const { rows } = await sql<{ source: string; status: string }>`
    SELECT source, status FROM status_events WHERE message_id = ${id} ORDER BY seq`.execute(
    database.db,
  );
  const jobs = await database.db
    .selectFrom('relay_jobs')
    .select('id')
    .where('message_id', '=', id)
    .execute();
  return { history: rows, relays: jobs.length };
}

const CALLBACKS_ONLY = [
  { source: 'proxy', status: 'queued' },
  { source: 'callback', status: 'sent' },
  { source: 'callback', status: 'delivered' },
];

test('When the final callback lands while the lookup is under way, then the lookup records no second event and no second relay', async () => {
  const id = await sentMessage();
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
  const { history, relays } = await afterTheSweep(id);
  expect(looked).toBe(1);
  expect(history).toEqual(CALLBACKS_ONLY);
  // sent and delivered, each once: the app is not told `delivered` twice.
  expect(relays).toBe(2);
});

test('When the final callback commits after the sweep has re-read the message but before its write, then the write sees it: no second event and no second relay', async () => {
  const id = await sentMessage();
  let answered = false;
  let raced = false;
  // The sweep's next transaction once the lookup has answered is its write of the answer:
  // SignalWire's delivered callback commits just before it begins, after the sweep's re-read.
  const db = new Proxy(database.db, {
    get(target, property, receiver) {
      if (property === 'transaction' && answered && !raced) {
        raced = true;
        const builder = target.transaction();
        return () => ({
          ...builder,
          execute: async (write: Parameters<typeof builder.execute>[0]) => {
            await recordEvents(target, [nativeCallback(id, 'delivered', new Date())]);
            return builder.execute(write);
          },
        });
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  sweep = startTestSweep({
    db,
    lookup: {
      async lookup(): Promise<LookupResult> {
        answered = true;
        return { kind: 'found', answer: { id, project_id: PROJECT, status: 'delivered' } };
      },
    },
    projects: [PROJECT],
  });
  const { history, relays } = await afterTheSweep(id);
  expect(raced).toBe(true);
  expect(history).toEqual(CALLBACKS_ONLY);
  expect(relays).toBe(2);
});
