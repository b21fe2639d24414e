import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { IDLE_CONNECTION_MS } from '../../src/relay/safe-agent';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { startFakeDns } from './fake-dns';
import type { FakeDns } from './fake-dns';
import {
  createRelayTestApp,
  eventually,
  lookupTo,
  relayJobWhen,
  seedProxiedMessage,
} from './support';
import type { RelayTestApp } from './support';

/**
 * The relay closes a connection to a receiver once it has been idle for IDLE_CONNECTION_MS,
 * whatever the receiver does. A receiver that never closes idle keep-alive connections (here
 * `keepAliveTimeout = 0`) used to keep one of the relay's sockets per host name open for the
 * process's life — one per message for an app with a wildcard name per message — and a name
 * that moved to another address was never resolved again while the old connection lived.
 */
jest.setTimeout(90_000);

/** Long enough for the idle timeout to have fired, with room for a busy machine. */
const IDLE_WAIT_MS = IDLE_CONNECTION_MS + 3_000;

let t: RelayTestApp;
let dns: FakeDns;
let movingTarget = '127.0.0.1';
const servers: Server[] = [];

/** A receiver that never closes an idle keep-alive connection; counts its calls. */
async function startReceiver(
  host: string,
  port = 0,
): Promise<{ server: Server; hits: () => number; open: Set<Socket> }> {
  let hits = 0;
  const open = new Set<Socket>();
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits++;
      res.end('ok');
    });
  });
  server.keepAliveTimeout = 0;
  server.on('connection', (socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return { server, hits: () => hits, open };
}

beforeAll(async () => {
  dns = await startFakeDns((name) =>
    name === 'app.moving.example.test' ? { a: [movingTarget] } : undefined,
  );
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '1s', RELAY_TIMEOUT_MS: '15000' });
});

afterEach(async () => {
  await t.stopWorkers();
});

afterAll(async () => {
  await t.close();
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  await dns.close();
});

test('When relays went to many host names of a receiver that keeps idle connections open, then none of those connections stays open once idle', async () => {
  const receiver = await startReceiver('127.0.0.1');
  const { port } = receiver.server.address() as AddressInfo;
  const hosts = 12;
  const ids: string[] = [];
  for (let i = 0; i < hosts; i++) {
    const id = await seedProxiedMessage(
      t.database.db,
      'cxml',
      `http://m${i}.wildcard.example.test:${port}/status`,
    );
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
    ids.push(id);
  }
  t.startWorker({
    lookup: lookupTo('127.0.0.1'),
    tuning: { pollMs: 20, statsEveryMs: 50 },
  });
  await eventually(async () => {
    const rows = await t.database.db
      .selectFrom('relay_jobs')
      .select('state')
      .where('message_id', 'in', ids)
      .execute();
    return rows.length === hosts && rows.every((row) => row.state === 'delivered');
  }, 30_000);
  expect(receiver.hits()).toBe(hosts);

  await new Promise((resolve) => setTimeout(resolve, IDLE_WAIT_MS));
  expect({ idleConnectionsStillOpen: receiver.open.size }).toEqual({
    idleConnectionsStillOpen: 0,
  });
});

test('When an app’s name moved to another address while the connection to the old one sat idle, then the next relay goes to the new address', async () => {
  const oldApp = await startReceiver('127.0.0.1');
  const { port } = oldApp.server.address() as AddressInfo;
  const newApp = await startReceiver('127.0.0.2', port);
  const url = `http://app.moving.example.test:${port}/status`;
  t.startWorker({
    dnsServers: [dns.server],
    dnsSearch: { domains: [], ndots: 1 },
    tuning: { pollMs: 20, statsEveryMs: 50 },
  });

  const first = await seedProxiedMessage(t.database.db, 'cxml', url);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: first, MessageStatus: 'sent' })).expect(200);
  await relayJobWhen(t.database.db, first, (job) => job.state === 'delivered');
  expect({ old: oldApp.hits(), new: newApp.hits() }).toEqual({ old: 1, new: 0 });

  // The app moves (its name's TTL is 0); its next callback comes after an idle spell.
  movingTarget = '127.0.0.2';
  await new Promise((resolve) => setTimeout(resolve, IDLE_WAIT_MS));
  const second = await seedProxiedMessage(t.database.db, 'cxml', url);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: second, MessageStatus: 'sent' })).expect(
    200,
  );
  await relayJobWhen(t.database.db, second, (job) => job.state === 'delivered');
  expect({ old: oldApp.hits(), new: newApp.hits() }).toEqual({ old: 1, new: 1 });
});
