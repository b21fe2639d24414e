import { createServer } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRelay } from '../../src/relay/relay';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually, seedProxiedMessage } from './support';

/**
 * DESIGN §10: "a 2xx within RELAY_TIMEOUT_MS is delivered". The status line is the app's
 * answer; what follows it (a body that is slow, endless or huge) is none of the relay's
 * business and must neither turn a delivered callback into a retry (the app would get it
 * again) nor hold the worker.
 */

let t: TestApp;
let worker: RelayWorker;
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
  t = await createTestApp({ RELAY_RETRY_SCHEDULE: '50ms,50ms', RELAY_TIMEOUT_MS: '500' });
  worker = createRelay({
    config: t.config,
    db: t.database.db,
    logger: t.deps.logger,
    tuning: { pollMs: 20 },
  });
  worker.start();
});

afterAll(async () => {
  await worker.stop();
  for (const res of open) res.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await t.close();
});

async function finished(id: string) {
  return eventually(async () => {
    const row = await t.database.db
      .selectFrom('relay_jobs')
      .selectAll()
      .where('message_id', '=', id)
      .executeTakeFirst();
    return row !== undefined && row.state !== 'pending' && row;
  });
}

test('When the app answers 200 at once and its body never ends, then the relay is delivered after one request', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', `${base}/endless`);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  const job = await finished(id);
  expect(job).toMatchObject({ state: 'delivered', attempts: 1, last_status: 200 });
  expect(requests.get('/endless')).toBe(1);
});
