import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import type { RelayWorker } from '../../src/relay/relay-worker';
import { signJsonBody, signSha256 } from '../../src/signalwire/signing';
import { eventually, startRelayWorker } from '../relay/support';
import { startStack } from './stack';
import type { Stack } from './stack';

/**
 * SignalWire's JSON webhooks may carry `X-Signalwire-SHA256-Signature` (hex HMAC-SHA256 over
 * url + raw body, SIGNALWIRE.md) beside the SHA-1 one, and an app may check it. A native
 * relay carried only the SHA-1 signature, so such an app refused every relayed callback. Now a
 * JSON relay carries both, over the caller's URL; a form relay keeps the form scheme only.
 */

interface Received {
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let stack: Stack;
let worker: RelayWorker;
let app: Server;
let base = '';
const received: Received[] = [];

beforeAll(async () => {
  app = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  stack = await startStack();
  worker = startRelayWorker(stack.app);
});

afterAll(async () => {
  await worker.stop();
  await stack.close();
  await new Promise<void>((resolve) => {
    app.close(() => resolve());
    app.closeAllConnections();
  });
});

test('When a native send has its own callback, then every relay carries a SHA-256 signature the app can verify', async () => {
  const callback = `${base}/sms/status?tenant=42`;
  const id = await stack.send('native', '+15558401000', { body: 'hi', statusCallback: callback });
  await stack.sim.waitForIdle();
  const count = stack.sim.deliveries.filter((d) => d.messageId === id).length;
  const relays = await eventually(() => {
    const mine = received.filter((r) => r.body.includes(id));
    return mine.length >= count && mine;
  });
  for (const relay of relays) {
    expect(relay.headers['x-signalwire-signature']).toBe(
      signJsonBody(SIMULATOR_SIGNING_KEY, callback, relay.body),
    );
    expect(relay.headers['x-signalwire-sha256-signature']).toBe(
      signSha256(SIMULATOR_SIGNING_KEY, callback, relay.body),
    );
  }
});

test('When a compatibility send has its own callback, then its form relays carry no SHA-256 signature', async () => {
  const id = await stack.send('cxml', '+15557401000', {
    body: 'hi',
    statusCallback: `${base}/sms/status`,
  });
  await stack.sim.waitForIdle();
  const count = stack.sim.deliveries.filter((d) => d.messageId === id).length;
  const relays = await eventually(() => {
    const mine = received.filter((r) => r.body.includes(id));
    return mine.length >= count && mine;
  });
  for (const relay of relays) {
    expect(relay.headers['x-signalwire-signature']).toBeDefined();
    expect(relay.headers).not.toHaveProperty('x-signalwire-sha256-signature');
  }
});
