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
const open = new Set<ServerResponse>();

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests.set(req.url ?? '', (requests.get(req.url ?? '') ?? 0) + 1);
      res.writeHead(200, { 'content-type': 'text/plain' });
      if (req.url === '/endless') {
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
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '50ms,50ms', RELAY_TIMEOUT_MS: '500' });
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
