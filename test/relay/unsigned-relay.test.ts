import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { recordEvents } from '../../src/messages/record-events';
import type { Api } from '../../src/messages/statuses';
import { statusEvent } from '../factories';
import { cxmlFields, nativeFields } from '../helpers/callbacks';
import { TEST_TOKEN_SECRET } from '../helpers/test-app';
import { createRelayTestApp, eventually } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * Without SIGNALWIRE_SIGNING_KEYS (a real space, callbacks authenticated by their per-send
 * token only) there is no key to sign a relay with: the app gets the callback without any
 * signature header, never an HMAC computed under an empty key that anyone could reproduce.
 */

let t: RelayTestApp;
let app: CustomerApp;

beforeAll(async () => {
  t = await createRelayTestApp({
    SIGNALWIRE_SIGNING_KEYS: '',
    RELAY_RETRY_SCHEDULE: '50ms',
  });
  expect(t.config.signingKeys).toEqual([]);
  app = await t.customerApp('');
  t.startWorker({ tuning: { statsEveryMs: 50 } });
});

afterAll(() => t.close());

/** A message the proxy recorded with the caller's own callback, bound to the token's ref. */
async function proxied(api: Api, ref: string): Promise<string> {
  const id = randomUUID();
  const send = { ref, kind: 'sms' as const, clientStatusCallback: app.callbackUrl(), body: null };
  await recordEvents(t.database.db, [
    statusEvent('queued', { messageId: id, api, source: 'proxy', send }),
  ]);
  return id;
}

test.each([
  ['cxml', 'application/x-www-form-urlencoded'],
  ['native', 'application/json'],
] as const)(
  'When no signing key is configured and a %s callback came by token, then it is relayed without any signature header',
  async (api, contentType) => {
    const { token, ref } = mintCallbackToken([TEST_TOKEN_SECRET]);
    const id = await proxied(api, ref);
    const body =
      api === 'cxml'
        ? new URLSearchParams(cxmlFields({ MessageSid: id, MessageStatus: 'sent' })).toString()
        : JSON.stringify(nativeFields({ id, status: 'sent' }));
    await request(t.publicApp)
      .post(`/callbacks/${api}/${token}`)
      .set('Content-Type', contentType)
      .send(body)
      .expect(200);

    const [relay] = await eventually(() => {
      const got = app.received.filter((r) => r.messageId === id);
      return got.length === 1 && got;
    });
    expect(relay!.body).toBe(body);
    expect(relay!.headers['content-type']).toBe(contentType);
    expect(relay!.headers).not.toHaveProperty('x-signalwire-signature');
    expect(relay!.headers).not.toHaveProperty('x-twilio-signature');
    expect(relay!.headers).not.toHaveProperty('x-signalwire-sha256-signature');
  },
);
