import type { AddressInfo } from 'node:net';
import http from 'node:http';
import { RestClient } from '@signalwire/compatibility-api';
import { signFormParams } from '../../src/signalwire/signing';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY } from '../helpers/test-app';
import { createRelayTestApp, eventually, lookupTo, seedProxiedMessage } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * DESIGN §10: a relay is signed as SignalWire signs, so the app's existing
 * `validateRequest(signingKey, signature, url, params)` passes unchanged — and SignalWire signs
 * "exactly the callback URL given" (SIGNALWIRE.md), which the official SDK documents as the
 * `url` to pass. The relay signs the URL as given; it calls the path and query as written too
 * where HTTP can carry them, so an app that rebuilds the URL from the request (twilio-style
 * `webhook()` middleware) verifies as well. (A review had the relay sign the URL as WHATWG
 * respells it: the SDK's check for the configured URL then failed for non-ASCII, an
 * internationalised host or a quote; and the transport called `'` as `%27`, so a GET relay
 * whose query held an apostrophe was called at a URL other than the one signed.)
 */

let t: RelayTestApp;
let app: CustomerApp;
let server: http.Server;

beforeAll(async () => {
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '50ms,50ms', RELAY_TIMEOUT_MS: '15000' });
  app = await t.customerApp();
  // Every name resolves to the customer app (127.0.0.1), an internationalised one too.
  t.startWorker({ lookup: lookupTo('127.0.0.1') });
  server = http.createServer(t.publicApp);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await t.close();
});

const receivedFor = (id: string) => app.received.filter((r) => r.messageId === id);

test.each([
  ['non-ASCII text in its query', (port: number) => `http://127.0.0.1:${port}/s?tenant=Zürich`],
  ['an internationalised host name', (port: number) => `http://bücher.example.test:${port}/s`],
  ['a quote in its query', (port: number) => `http://127.0.0.1:${port}/s?name='x'`],
  ['dot segments in its path', (port: number) => `http://127.0.0.1:${port}/a/../s?x={1}`],
])(
  'When the app’s status callback URL has %s, then the official SDK’s validateRequest verifies the relayed callback for the URL the app configured',
  async (_what, urlFor) => {
    const configured = urlFor(app.port);
    const id = await seedProxiedMessage(t.database.db, 'cxml', configured);
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
    const [relay] = await eventually(() => receivedFor(id).length >= 1 && receivedFor(id));
    const signature = String(relay!.headers['x-signalwire-signature']);
    const params = Object.fromEntries(new URLSearchParams(relay!.body));
    expect(RestClient.validateRequest(TEST_SIGNING_KEY, signature, configured, params)).toBe(true);
  },
);

test.each([
  ['a quote in its query', "/s?name='x'"],
  ['dot segments and braces', '/a/../s?x={1}'],
])(
  'When the app’s status callback URL has %s, then the app is called at the path and query as written: the URL it rebuilds from the request verifies too',
  async (_what, pathAndQuery) => {
    const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl(pathAndQuery));
    await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
    const [relay] = await eventually(() => receivedFor(id).length >= 1 && receivedFor(id));
    // The customer app verifies as apps do: its base URL + the request's path and query.
    expect({ path: relay!.path, valid: relay!.valid }).toEqual({ path: pathAndQuery, valid: true });
  },
);

test('When SignalWire calls back with GET and the query holds an apostrophe, then the app is called at the URL that was signed', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/get-hook'));
  // SignalWire's query as received, the message text `It's` with its apostrophe unencoded
  // (as encodeURIComponent leaves it).
  const query = new URLSearchParams(
    cxmlFields({ MessageSid: id, MessageStatus: 'sent', Body: "It's" }),
  )
    .toString()
    .replace(/%27/g, "'");
  const path = `/callbacks/cxml?${query}`;
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: (server.address() as AddressInfo).port,
      path,
      method: 'GET',
      headers: {
        'x-signalwire-signature': signFormParams(
          TEST_SIGNING_KEY,
          `${TEST_PUBLIC_BASE_URL}${path}`,
          [],
        ),
      },
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  expect(status).toBe(200);
  const [relay] = await eventually(() => receivedFor(id).length >= 1 && receivedFor(id));
  expect({ path: relay!.path, valid: relay!.valid }).toEqual({
    path: expect.stringMatching(/^\/get-hook\?MessageSid=.*It's/),
    valid: true,
  });
});
