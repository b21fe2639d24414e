import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { recordEvents } from '../../src/messages/record-events';
import { createMessageLookup } from '../../src/reconcile/lookup-client';
import type { ReconcileWorker } from '../../src/reconcile/reconcile-worker';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../relay/support';
import { startTestSweep } from './support';

/**
 * DESIGN §11: a lookup SignalWire refuses is "recorded on the message's sweep state, not
 * retried in a loop". Only 401/403/404 were: any other answer that asking again will not
 * change — a 400, a redirect (redirects are not followed), a body that is no message resource
 * (an HTML page, one past 1 MiB) — kept the message at its step and looked it up again every
 * 10 s to 10 min for ever: it was never stuck, and enough such messages used up RECONCILE_RATE.
 * Overload and outages (408, 429, 5xx, no answer) still wait and retry the same step.
 */

let database: TestDatabase;
let sweep: ReconcileWorker | undefined;
let server: Server;
let baseUrl = '';
let answer: { status: number; headers?: Record<string, string>; body: string };
let requests = 0;
let projects = 0;

beforeAll(async () => {
  database = await createTestDatabase();
  server = createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(answer.status, answer.headers ?? { 'content-type': 'application/json' });
    res.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await sweep?.stop();
  sweep = undefined;
  requests = 0;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await database.destroy();
});

async function sentMessage(project: string): Promise<string> {
  const event = statusEvent('sent', {
    api: 'cxml',
    projectId: project,
    receivedAt: new Date(Date.now() - 60_000),
  });
  await recordEvents(database.db, [event]);
  return event.messageId;
}

function startSweep(project: string): ReconcileWorker {
  return startTestSweep({
    db: database.db,
    lookup: createMessageLookup({
      baseUrl,
      credentials: new Map([[project, { projectIdAsWritten: project, token: 'PT-token' }]]),
      timeoutMs: 15_000,
    }),
    // Both steps long past for a message whose last event is a minute old.
    rate: 20,
    projects: [project],
  });
}

const sweepState = (id: string) =>
  database.db
    .selectFrom('messages')
    .select(['stuck', 'sweep_step', 'sweep_error'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

test.each([
  ['a 400', { status: 400, body: '{"message":"bad request"}' }, 'HTTP 400'],
  [
    'a redirect',
    { status: 301, headers: { location: 'https://elsewhere.example/' }, body: '' },
    'HTTP 301',
  ],
  [
    'an HTML page with 200',
    { status: 200, headers: { 'content-type': 'text/html' }, body: '<html>login</html>' },
    'the answer is not a JSON object',
  ],
])(
  'When SignalWire answers every lookup of a message with %s, then each counts as its step, recorded, and the message ends stuck',
  async (_what, given, error) => {
    answer = given;
    const project = `p-unusable-${++projects}`;
    const id = await sentMessage(project);
    sweep = startSweep(project);
    const state = await eventually(async () => {
      const row = await sweepState(id);
      return row.stuck && row;
    }, 20_000);
    expect(state).toEqual({ stuck: true, sweep_step: 2, sweep_error: error });
    await new Promise((resolve) => setTimeout(resolve, 300));
    // One lookup per step, no more.
    expect(requests).toBe(2);
  },
);

test('Control: when SignalWire answers 503, then the message keeps its step and waits to be tried again', async () => {
  answer = { status: 503, body: '{"message":"unavailable"}' };
  const id = await sentMessage('p-unusable-503');
  sweep = startSweep('p-unusable-503');
  await eventually(() => requests >= 1, 20_000);
  await new Promise((resolve) => setTimeout(resolve, 500));
  // The server counts the request before it answers; the sweep writes what came of it after
  // (postpone, or recordStep had it counted as the step): waited for, not only the pause.
  const state = await eventually(async () => {
    const row = await sweepState(id);
    return row.sweep_error !== null && row;
  }, 20_000);
  expect(state).toEqual({ stuck: false, sweep_step: 0, sweep_error: 'HTTP 503' });
  expect(requests).toBe(1);
});
