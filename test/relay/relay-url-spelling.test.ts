import { RestClient } from '@signalwire/compatibility-api';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { TEST_SIGNING_KEY } from '../helpers/test-app';
import { createRelayTestApp, eventually, lookupTo, seedProxiedMessage } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * DESIGN §10: the app's existing `validateRequest(...)` passes on a relayed callback unchanged.
 * The relay signed the app's callback URL as the caller wrote it but requested it as an HTTP
 * client spells it (non-ASCII percent-encoded, the host lower-cased), so the app never saw the
 * URL that was signed: the official SDK refused every relayed callback — for the URL the app was
 * called at (what twilio-style `webhook()` middleware and sw-status's own receiver verify
 * against) and, for an upper-case host, for the URL as the app configured it too (the SDK
 * lower-cases the host). Found by review.
 */

let t: RelayTestApp;
let app: CustomerApp;

beforeAll(async () => {
  t = await createRelayTestApp({ RELAY_RETRY_SCHEDULE: '50ms,50ms', RELAY_TIMEOUT_MS: '2000' });
  app = await t.customerApp();
  t.startWorker({ lookup: lookupTo('127.0.0.1') });
});

afterAll(() => t.close());

const receivedFor = (id: string) => app.received.filter((r) => r.messageId === id);

test.each(['cxml', 'native'] as const)(
  'When the app’s own %s status callback URL holds non-ASCII text in its query, then the relayed callback verifies for the URL the app is called at',
  async (api) => {
    const id = await seedProxiedMessage(
      t.database.db,
      api,
      app.callbackUrl('/sms/status?tenant=Zürich'),
    );
    if (api === 'cxml') {
      await postCxml(t.publicApp, cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).expect(
        200,
      );
    } else {
      await postNative(t.publicApp, nativeFields({ id, status: 'sent' })).expect(200);
    }
    const [relay] = await eventually(() => receivedFor(id).length === 1 && receivedFor(id));
    // What any HTTP client puts on the request line for that URL.
    expect(relay!.path).toBe('/sms/status?tenant=Z%C3%BCrich');
    // The customer app validates as apps do: its base URL + the request's path and query.
    expect(relay!.valid).toBe(true);
  },
);

test('When the app’s own status callback URL names its host in upper case, then the official SDK validates the relayed callback', async () => {
  const configured = `http://CALLBACKS.EXAMPLE.TEST:${app.port}/sms/status`;
  const id = await seedProxiedMessage(t.database.db, 'cxml', configured);
  const fields = cxmlFields({ MessageSid: id, MessageStatus: 'sent' });
  await postCxml(t.publicApp, fields).expect(200);
  const [relay] = await eventually(() => receivedFor(id).length === 1 && receivedFor(id));
  const signature = String(relay!.headers['x-signalwire-signature']);
  const params = Object.fromEntries(new URLSearchParams(relay!.body));
  const calledAt = `http://${relay!.headers.host}${relay!.path}`;
  // Either way an app can name the URL: as it configured it, or as it was called.
  expect({
    configured: RestClient.validateRequest(TEST_SIGNING_KEY, signature, configured, params),
    calledAt: RestClient.validateRequest(TEST_SIGNING_KEY, signature, calledAt, params),
  }).toEqual({ configured: true, calledAt: true });
});
