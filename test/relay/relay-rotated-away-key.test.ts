import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { RestClient } from '@signalwire/compatibility-api';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { recordEvents } from '../../src/messages/record-events';
import { signingKeyRef } from '../../src/signalwire/signing';
import { statusEvent, TEST_PROJECTS } from '../factories';
import { postCxml } from '../helpers/callbacks';
import { TEST_TOKEN_SECRET } from '../helpers/test-app';
import { createRelayTestApp, eventually } from './support';
import type { CustomerApp, ReceivedRelay, RelayTestApp } from './support';

/**
 * README: a relay whose key has been rotated away is signed, of several keys listed alone, with
 * the one that verified the newest signed callback of the message's project. The claim read
 * the project's key only for jobs with no key reference: a job naming a key no longer
 * configured went out unsigned with several projects named, although the project's newer
 * callbacks verified under a key still listed. Found by review.
 */

const PROJECT_A = '11111111-2222-4333-8444-555555555555';
const PROJECT_B = TEST_PROJECTS.cxml;
const KEY_A = 'PSK_project_a_alone_aaaaaaaaaaaaaaa';
const KEY_B = 'PSK_project_b_alone_bbbbbbbbbbbbbbb';
/** Project B's previous key: verified M2's callback, then removed from the configuration. */
const KEY_B_RETIRED = 'PSK_project_b_retired_rrrrrrrrrrrrr';

let t: RelayTestApp;
let appB: CustomerApp;

beforeAll(async () => {
  t = await createRelayTestApp({
    SIGNALWIRE_SIGNING_KEYS: `${KEY_A},${KEY_B}`,
    SIGNALWIRE_PROJECT_IDS: `${PROJECT_A},${PROJECT_B}`,
    RELAY_RETRY_SCHEDULE: '50ms',
  });
  appB = await t.customerApp(KEY_B);
});
afterAll(() => t.close());

async function proxied(callback: string) {
  const { token, ref } = mintCallbackToken([TEST_TOKEN_SECRET]);
  const id = randomUUID();
  await recordEvents(t.database.db, [
    statusEvent('queued', {
      messageId: id,
      api: 'cxml',
      projectId: PROJECT_B,
      source: 'proxy',
      send: { ref, kind: 'sms', clientStatusCallback: callback, body: null },
    }),
  ]);
  return { id, token };
}

function fields(id: string): Record<string, string> {
  return {
    MessageSid: id,
    MessageStatus: 'delivered',
    AccountSid: PROJECT_B,
    From: '+15551234567',
    To: '+15557654321',
    Body: 'hi',
    NumMedia: '0',
  };
}

test('When a pending relay’s key was rotated away and the project’s newer callbacks verified under its current key, then the relay is signed with that key (README), not sent unsigned', async () => {
  // M2: its callback verified under B's old key (simulated: the ref is what the old key left).
  const targetOld = appB.callbackUrl('/b/rotated');
  const m2 = await proxied(targetOld);
  await request(t.publicApp)
    .post(`/callbacks/cxml/${m2.token}`)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send(new URLSearchParams(fields(m2.id)).toString())
    .expect(200);
  await t.database.db
    .updateTable('relay_jobs')
    .set({ signing_key_ref: signingKeyRef(KEY_B_RETIRED) })
    .where('message_id', '=', m2.id)
    .execute();

  // M1, later: B's callbacks now verify under KEY_B (the newest signed callback of B).
  const m1 = await proxied(appB.callbackUrl('/b/current'));
  const res = await postCxml(t.publicApp, fields(m1.id), {
    path: `/callbacks/cxml/${m1.token}`,
    key: KEY_B,
  });
  expect(res.status).toBe(200);

  t.startWorker();
  const relay: ReceivedRelay = await eventually(() =>
    appB.received.find((r) => r.messageId === m2.id),
  );
  const signature = String(relay.headers['x-signalwire-signature'] ?? '');
  const params = Object.fromEntries(new URLSearchParams(relay.body));
  expect(signature).not.toBe('');
  expect(RestClient.validateRequest(KEY_B, signature, targetOld, params)).toBe(true);
});
