import type { RelayWorker } from '../../src/relay/relay-worker';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createRelayTestApp, eventually, seedProxiedMessage } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * A relay job's lease must outlast its attempt (DESIGN §10: replicas share jobs "without
 * sending one twice at once"). A claimed job may wait in memory for its host's slot; started
 * late in its lease, an attempt that then takes RELAY_TIMEOUT_MS ran past the lease, another
 * replica claimed the job meanwhile and sent it again while the first request was still open
 * (and, having delivered it, could send the message's next callback before the first copy
 * ended). The lease's room beyond one attempt is shortened here (leaseSlackMs) so that this
 * shows within seconds; with the default 30 s it needed RELAY_TIMEOUT_MS above about 30 s, or a
 * replica whose outbox turns stalled.
 */
jest.setTimeout(30_000);

let t: RelayTestApp;
let app: CustomerApp;

beforeAll(async () => {
  t = await createRelayTestApp({
    RELAY_HOST_CONCURRENCY: '1',
    RELAY_TIMEOUT_MS: '2000',
    // No retry within the test: every request the app gets is a first attempt.
    RELAY_RETRY_SCHEDULE: '30s',
  });
  app = await t.customerApp();
});

afterAll(() => t.close());

function startWorker(): RelayWorker {
  return t.startWorker({
    // Lease: RELAY_TIMEOUT_MS + 1000 ms; a claimed relay starts within 500 ms of its claim or
    // is given back. (A slack of 400 ms left a fixed relay ~200 ms, less the claim's and the
    // outcome's statements, to end its attempt within its lease: too little on a loaded machine.)
    tuning: { statsEveryMs: 60_000, leaseSlackMs: 1_000 },
  });
}

test('When a claimed relay waited for its host’s slot, then it is never sent while another replica sends it too', async () => {
  // Two relays to one app with one slot: the second waits in memory for the first (1500 ms,
  // longer than the lease's slack: started then, its attempt would outlive its lease).
  const first = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/one'));
  const second = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/one'));
  app.behave(first, () => ({ status: 200, delayMs: 1_500 }));
  // Its first request hangs past RELAY_TIMEOUT_MS (2000 ms); any later one is answered at once.
  app.behave(second, (n) => ({ status: 200, delayMs: n === 1 ? 3_000 : 0 }));
  for (const id of [first, second]) {
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  }
  startWorker();
  // The first replica has claimed both and is sending the first: a second replica joins.
  await eventually(() => app.paths.length >= 1);
  startWorker();

  // Lease 3000 ms from the claim; the hanging request ends by 3000 ms after it started (before
  // the fix: started at 1500 ms, it was open from 3000 ms, when another replica took it, to
  // 4500 ms).
  await new Promise((resolve) => setTimeout(resolve, 5_500));
  expect(app.maxConcurrent([second])).toBe(1);
  expect(app.maxConcurrent([first])).toBe(1);
});

test('When the wall clock steps back while a claimed relay waits for its host’s slot, then it is still given back in time, never sent while another replica sends it too', async () => {
  // Only this test's replicas.
  await t.stopWorkers();
  const first = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/stepped'));
  const second = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/stepped'));
  app.behave(first, () => ({ status: 200, delayMs: 1_500 }));
  app.behave(second, (n) => ({ status: 200, delayMs: n === 1 ? 3_000 : 0 }));
  for (const id of [first, second]) {
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  }
  const sentBefore = app.paths.length;
  startWorker();
  await eventually(() => app.paths.length > sentBefore);
  // NTP steps this host's clock back 10 s: the waiting relay's claim must not look younger.
  const realNow = Date.now.bind(Date);
  const stepped = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - 10_000);
  try {
    startWorker();
    await new Promise((resolve) => setTimeout(resolve, 5_500));
  } finally {
    stepped.mockRestore();
  }
  expect(app.maxConcurrent([second])).toBe(1);
  expect(app.maxConcurrent([first])).toBe(1);
});
