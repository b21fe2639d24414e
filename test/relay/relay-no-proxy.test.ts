import { cxmlFields, postCxml } from '../helpers/callbacks';
import { startForwardProxy } from '../helpers/forward-proxy';
import type { ForwardProxy } from '../helpers/forward-proxy';
import { createRelayTestApp, eventually, seedProxiedMessage } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * HTTPS_PROXY / HTTP_PROXY are for SignalWire-bound traffic only. Relays to the callers' apps
 * stay direct whatever they say: a forward proxy resolves the app's name itself, after the
 * relay's address policy checked what this process resolved, and would defeat it.
 */

let t: RelayTestApp;
let app: CustomerApp;
let egress: ForwardProxy;

beforeAll(async () => {
  egress = await startForwardProxy();
  t = await createRelayTestApp({
    RELAY_RETRY_SCHEDULE: '50ms,50ms,50ms',
    HTTP_PROXY: egress.url,
    HTTPS_PROXY: egress.url,
  });
  app = await t.customerApp();
  t.startWorker({ tuning: { statsEveryMs: 50 } });
});

afterAll(async () => {
  await t.close();
  await egress.close();
});

test('When HTTP_PROXY and HTTPS_PROXY are set, then a relay still goes straight to the caller’s app', async () => {
  const id = await seedProxiedMessage(t.database.db, 'cxml', app.callbackUrl('/sms/status'));
  await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(200);

  await eventually(() => app.received.some((r) => r.messageId === id && r.valid));
  expect(egress.requests).toEqual([]);
  expect(egress.connections()).toBe(0);
});
