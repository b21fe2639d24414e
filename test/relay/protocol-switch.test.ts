import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { createRelayTransport } from '../../src/relay/relay-transport';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createRelayTestApp, relayJobWhen, seedProxiedMessage } from './support';
import type { RelayTestApp } from './support';

/**
 * A caller's callback URL may answer anything. `101 Switching Protocols` is no answer to a
 * callback, and Node's client ends such an exchange with neither a response nor an error (only
 * `close`, when nobody takes the upgrade): an attempt that waited for one of those would never
 * end, keeping its host's slot and a share of the worker's room for good — a few such URLs
 * and the replica relays nothing, for any host, and cannot stop. It must end like any other
 * answer that is not a 2xx: retried, then dead.
 */

let t: RelayTestApp;
let switcher: net.Server;
let switcherUrl = '';

beforeAll(async () => {
  // Answers every request with 101 and keeps the connection open.
  switcher = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', () =>
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
      ),
    );
  });
  await new Promise<void>((resolve) => switcher.listen(0, '127.0.0.1', resolve));
  switcherUrl = `http://127.0.0.1:${(switcher.address() as AddressInfo).port}/hook`;
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '20ms', RELAY_TIMEOUT_MS: '15000' });
  t.startWorker();
});

afterAll(async () => {
  // Waits for every attempt in flight: it would never return while one hung.
  await t.stopWorkers();
  await new Promise((resolve) => switcher.close(resolve));
  await t.close();
});

test('When the callback URL answers 101 Switching Protocols, then the attempt ends as that answer', async () => {
  const transport = createRelayTransport({
    timeoutMs: 60_000,
    maxSockets: 4,
    allowedNetworks: ['127.0.0.0/8'],
    allowHttp: true,
  });
  try {
    const result = await transport.send({
      url: switcherUrl,
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: Buffer.from('MessageStatus=sent'),
    });
    expect(result).toEqual({ kind: 'answered', status: 101 });
  } finally {
    transport.close();
  }
});

test('When the callback URL answers 101 Switching Protocols, then the relay is retried and dead, not held forever', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', switcherUrl);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  const job = await relayJobWhen(t.database.db, id, (row) => row.state === 'dead');
  expect(job).toMatchObject({ attempts: 2, last_status: 101 });
  expect(job.last_error).toMatch(/HTTP 101/);
});

test('When the callback URL answers 200 with a body in thousands of 1-byte chunks, then the relay stops reading and closes the connection', async () => {
  // Node hands each chunk to JavaScript on its own: 60,000 of them (360 KB on the wire, under
  // the 64 KiB the relay reads of a body) were all read, and the connection kept for reuse.
  let closedByRelay: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (closedByRelay = resolve));
  const chunky = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.on('close', () => closedByRelay());
    socket.once('data', () =>
      socket.write(
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
          '1\r\nx\r\n'.repeat(60_000) +
          '0\r\n\r\n',
      ),
    );
  });
  await new Promise<void>((resolve) => chunky.listen(0, '127.0.0.1', resolve));
  const transport = createRelayTransport({
    timeoutMs: 60_000,
    maxSockets: 4,
    allowedNetworks: ['127.0.0.0/8'],
    allowHttp: true,
  });
  try {
    const result = await transport.send({
      url: `http://127.0.0.1:${(chunky.address() as AddressInfo).port}/hook`,
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: Buffer.from('MessageStatus=sent'),
    });
    expect(result).toEqual({ kind: 'answered', status: 200 });
    // Without the bound, the keep-alive agent holds the socket open until transport.close().
    const outcome = await Promise.race([
      closed.then(() => 'closed'),
      new Promise((resolve) => setTimeout(() => resolve('still open'), 10_000)),
    ]);
    expect(outcome).toBe('closed');
  } finally {
    transport.close();
    await new Promise((resolve) => chunky.close(resolve));
  }
});
