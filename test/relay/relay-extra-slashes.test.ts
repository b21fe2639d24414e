import { callbackUrlProblem } from '../../src/signalwire/send-rules';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createRelayTestApp, eventually, lookupTo, seedProxiedMessage } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * The relay requests the path as written (relay-transport.ts requestTarget), cut from the
 * written URL after its host. WHATWG's parser (which picks the host connected to, and which the
 * send proxy accepts the URL with) skips any number of slashes after `http:`: for
 * `http:///host:port/s` it connects to host:port and the path is `/s` — a first version took
 * `/host:port/s`, a path the app does not serve (404 on every attempt; the relay went dead).
 * Found by review.
 */

let t: RelayTestApp;
let app: CustomerApp;

beforeAll(async () => {
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '50ms,50ms', RELAY_TIMEOUT_MS: '15000' });
  app = await t.customerApp();
  t.startWorker({ lookup: lookupTo('127.0.0.1') });
});

afterAll(async () => {
  await t.close();
});

test('When the app’s status callback URL has an extra slash after the scheme, then the app is called at the path of the host the relay connects to', async () => {
  const configured = `http:///127.0.0.1:${app.port}/s`;
  // The send proxy takes it as a status callback.
  expect(callbackUrlProblem(configured)).toBeNull();
  const id = await seedProxiedMessage(t.database.db, 'cxml', configured);
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);
  const [relay] = await eventually(
    () =>
      app.received.filter((r) => r.messageId === id).length >= 1 &&
      app.received.filter((r) => r.messageId === id),
  );
  expect(relay!.path).toBe('/s');
});
