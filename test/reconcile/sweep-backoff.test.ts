import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { retryAfter } from '../../src/http/retry-after';
import { recordEvents } from '../../src/messages/record-events';
import { createMessageLookup } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker, ReconcileWorkerOptions } from '../../src/reconcile/reconcile-worker';
import { afterLookup, lookupPause } from '../../src/reconcile/sweep-policy';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { startTestSweep } from './support';

/**
 * The sweep is a client of SignalWire's REST API (DESIGN §11): when SignalWire says it is
 * overloaded (429, with or without Retry-After) or is unavailable (5xx, no answer), this
 * replica slows down instead of keeping up RECONCILE_RATE against it; and a sweep that is
 * stopped makes no further lookup. A fake SignalWire on a real port counts every request.
 */

let database: TestDatabase;
let sweep: ReconcileWorker | undefined;
let server: Server;
let baseUrl = '';
let answer: (n: number) => { status: number; headers?: Record<string, string>; body?: string };
let requests = 0;

beforeAll(async () => {
  database = await createTestDatabase();
  server = createServer((req, res) => {
    requests++;
    req.resume();
    const a = answer(requests);
    res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
    res.end(a.body ?? '{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

beforeEach(() => {
  requests = 0;
});

afterEach(async () => {
  await sweep?.stop();
  sweep = undefined;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await database.destroy();
});

/** Native messages of `project` at `sent`, their last event a minute old: due at once. */
async function sentMessages(project: string, count: number): Promise<string[]> {
  const events = Array.from({ length: count }, () =>
    statusEvent('sent', {
      api: 'native',
      projectId: project,
      receivedAt: new Date(Date.now() - 60_000),
    }),
  );
  await recordEvents(database.db, events);
  return events.map((event) => event.messageId);
}

function startSweep(
  project: string,
  options: Partial<ReconcileWorkerOptions> = {},
): ReconcileWorker {
  return startTestSweep({
    db: database.db,
    lookup: createMessageLookup({
      baseUrl,
      credentials: new Map([[project, { projectIdAsWritten: project, token: 'PT-token' }]]),
      timeoutMs: 15_000,
    }),
    schedule: [50, 60_000],
    rate: 20,
    projects: [project],
    ...options,
  });
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('When SignalWire answers 429 with Retry-After, then this replica makes no lookup until it has passed', async () => {
  await sentMessages('p-429', 10);
  answer = () => ({
    status: 429,
    headers: { 'retry-after': '60' },
    body: '{"message":"slow down"}',
  });
  sweep = startSweep('p-429');
  await eventually(() => requests >= 1, 20_000);
  // At RECONCILE_RATE 20/s the other nine would all be asked within half a second.
  await pause(2_000);
  expect(requests).toBe(1);
});

test('When SignalWire keeps answering 503, then lookups back off instead of keeping the rate', async () => {
  await sentMessages('p-503', 10);
  answer = () => ({ status: 503, body: '{"message":"unavailable"}' });
  sweep = startSweep('p-503');
  await eventually(() => requests >= 1, 20_000);
  await pause(2_000);
  // Backing off from 1 s: at most the first, one after 1 s, and one after 3 s more.
  expect(requests).toBeLessThanOrEqual(3);
});

test('When SignalWire recovers after a 503, then the sweep goes on with the other messages after its pause', async () => {
  const ids = await sentMessages('p-recover', 5);
  answer = (n) =>
    n === 1 ? { status: 503 } : { status: 200, body: JSON.stringify({ status: 'sent' }) };
  sweep = startSweep('p-recover');
  await eventually(async () => {
    const rows = await database.db
      .selectFrom('messages')
      .select('sweep_step')
      .where('id', 'in', ids)
      .where('sweep_step', '>=', 1)
      .execute();
    // All but the one that met the 503, which waits its own retry (10 s at least).
    return rows.length === ids.length - 1;
  }, 20_000);
});

test('When the sweep is stopped while it waits for its next lookup slot, then it makes no further lookup', async () => {
  await sentMessages('p-stop', 2);
  answer = () => ({ status: 200, body: JSON.stringify({ status: 'sent' }) });
  // One lookup a second, and both messages in one claim (a claim holds two seconds' worth): the
  // second waits for its slot in that turn when stop() comes.
  sweep = startSweep('p-stop', { rate: 1 });
  await eventually(() => requests >= 1, 20_000);
  await pause(200);
  await sweep.stop();
  sweep = undefined;
  await pause(300);
  expect(requests).toBe(1);
});

test('When SignalWire stays unavailable, then the pause doubles from 1 s to at most 5 min, and a Retry-After is obeyed up to 15 min', () => {
  expect([1, 2, 3, 4].map((n) => lookupPause(n, undefined))).toEqual([1_000, 2_000, 4_000, 8_000]);
  expect(lookupPause(40, undefined)).toBe(300_000);
  expect(lookupPause(1, 60_000)).toBe(60_000);
  expect(lookupPause(1, 7 * 86_400_000)).toBe(900_000);
  const now = Date.parse('2026-03-17T22:00:00Z');
  expect(retryAfter('120', now)).toBe(120_000);
  expect(retryAfter('Tue, 17 Mar 2026 22:00:30 GMT', now)).toBe(30_000);
  expect(retryAfter('soon', now)).toBeUndefined();
  expect(retryAfter(null, now)).toBeUndefined();
  // The message itself is not tried again before its Retry-After either.
  expect(
    afterLookup(0, [600_000], { kind: 'failed', error: 'HTTP 429', retryAfterMs: 120_000 }),
  ).toMatchObject({ kind: 'retry_later', retryMs: 120_000 });
});
