import { createServer } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createRelayTestApp, relayJobWhen, seedProxiedMessage } from './support';
import type { RelayTestApp } from './support';

/**
 * DESIGN §10: "a 2xx within RELAY_TIMEOUT_MS is delivered". The status line is the app's
 * answer; what follows it (a body that is slow, endless or huge) is none of the relay's
 * business and must neither turn a delivered callback into a retry (the app would get it
 * again) nor hold the worker.
 */

let t: RelayTestApp;
let server: Server;
let base = '';
const requests = new Map<string, number>();
/** When each request reached the app (ms since the epoch), by path. */
const arrivals = new Map<string, number[]>();
const open = new Set<ServerResponse>();

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests.set(req.url ?? '', (requests.get(req.url ?? '') ?? 0) + 1);
      arrivals.set(req.url ?? '', [...(arrivals.get(req.url ?? '') ?? []), Date.now()]);
      if (req.url === '/in-300-ms') {
        // A healthy app, answering well within RELAY_TIMEOUT_MS.
        setTimeout(() => res.writeHead(200).end('ok'), 300);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      if (req.url?.startsWith('/endless')) {
        // Answered at once, then a body that never ends.
        res.write('ok');
        open.add(res);
        const timer = setInterval(() => res.write('.'), 100);
        res.on('close', () => {
          clearInterval(timer);
          open.delete(res);
        });
      } else {
        res.end('ok');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '50ms,50ms', RELAY_TIMEOUT_MS: '5000' });
  t.startWorker();
});

afterAll(async () => {
  await t.stopWorkers();
  for (const res of open) res.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await t.close();
});

const finished = (id: string) => relayJobWhen(t.database.db, id, (job) => job.state !== 'pending');

test('When the app answers 200 at once and its body never ends, then the relay is delivered after one request', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', `${base}/endless`);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  const job = await finished(id);
  expect(job).toMatchObject({ state: 'delivered', attempts: 1, last_status: 200 });
  expect(requests.get('/endless')).toBe(1);
});

describe('one connection per host (RELAY_HOST_CONCURRENCY=1)', () => {
  // The endless body holds the one connection for the whole of it; the next relay's app then
  // answers in 300 ms, which must fit in the same timeout on a loaded machine (with 1 s it had
  // 700 ms of room, less than the loopback relays that timed out elsewhere under CI load).
  const TIMEOUT_MS = 2_000;
  let one: RelayTestApp;
  beforeAll(async () => {
    one = await createRelayTestApp({
      RELAY_RETRY_SCHEDULE: '30s',
      RELAY_TIMEOUT_MS: String(TIMEOUT_MS),
      RELAY_HOST_CONCURRENCY: '1',
    });
  });
  afterAll(async () => {
    await one.stopWorkers();
    await one.close();
  });

  test('When an app streams an endless body after its 200, then the next relay to it waits for the connection and is still given its whole RELAY_TIMEOUT_MS: delivered', async () => {
    // The host's slot was given back at the status line while the connection still read the
    // body: the next relay waited for a socket inside the agent, its time running, and was
    // cut off as "no answer" by the time it was sent — a healthy app's callback sent again.
    const slow = await seedProxiedMessage(one.database.db, 'cxml', `${base}/endless-one`);
    await postCxml(one.publicApp, cxmlFields({ MessageSid: slow, MessageStatus: 'sent' }));
    const next = await seedProxiedMessage(one.database.db, 'cxml', `${base}/in-300-ms`);
    await postCxml(one.publicApp, cxmlFields({ MessageSid: next, MessageStatus: 'sent' }));
    one.startWorker();
    const done = (id: string) => relayJobWhen(one.database.db, id, (job) => job.attempts > 0);
    expect(await done(slow)).toMatchObject({ state: 'delivered', attempts: 1 });
    expect(await done(next)).toMatchObject({ state: 'delivered', attempts: 1, last_status: 200 });
    // One connection: the second relay was sent only once the first one's was let go.
    expect(arrivals.get('/in-300-ms')![0]! - arrivals.get('/endless-one')![0]!).toBeGreaterThan(
      TIMEOUT_MS - 100,
    );
  }, 30_000);
});
