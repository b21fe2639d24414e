import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { RestClient } from '@signalwire/compatibility-api';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { recordEvents } from '../../src/messages/record-events';
import { lookupEvent } from '../../src/reconcile/lookup-event';
import { relaySigningKeyRef } from '../../src/reconcile/reconcile.repository';
import { signingKeyRef } from '../../src/signalwire/signing';
import { statusEvent, TEST_PROJECTS } from '../factories';
import { postCxml } from '../helpers/callbacks';
import { TEST_TOKEN_SECRET } from '../helpers/test-app';
import { createRelayTestApp, eventually } from './support';
import type { CustomerApp, RelayTestApp } from './support';

/**
 * project-signing-key.ts picked the project's newest relay job naming ANY key, also one no
 * longer configured (found by review). Reconciliation (relaySigningKeyRef) copies the message's own old ref
 * onto a NEW relay job: after a rotation, a lookup for a message whose callbacks verified
 * under the retired key becomes the project's newest "signed" job, and every later relay of the
 * project that asks for the project's key (token-admitted, or rotated away) goes unsigned,
 * although the project's newest signed callback verified under a key still listed.
 */

const PROJECT_A = '11111111-2222-4333-8444-555555555555';
const PROJECT_B = TEST_PROJECTS.cxml;
const KEY_A = 'PSK_project_a_alone_aaaaaaaaaaaaaaa';
const KEY_B = 'PSK_project_b_alone_bbbbbbbbbbbbbbb';
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

function fields(id: string, status: string): Record<string, string> {
  return {
    MessageSid: id,
    MessageStatus: status,
    AccountSid: PROJECT_B,
    From: '+15551234567',
    To: '+15557654321',
    Body: 'hi',
    NumMedia: '0',
  };
}

async function tokenAdmitted(id: string, token: string, status: string): Promise<void> {
  await request(t.publicApp)
    .post(`/callbacks/cxml/${token}`)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send(new URLSearchParams(fields(id, status)).toString())
    .expect(200);
}

test('When reconciliation relays a lookup for a message verified under a retired key, then later relays of the project are still signed with the key its newest signed callback verified under', async () => {
  const db = t.database.db;
  // M_old: its `sent` callback verified under B's old key, before the rotation (simulated as
  // the committed test does: the ref is what the old key left).
  const old = await proxied(appB.callbackUrl('/b/old'));
  await tokenAdmitted(old.id, old.token, 'sent');
  await db
    .updateTable('relay_jobs')
    .set({ signing_key_ref: signingKeyRef(KEY_B_RETIRED) })
    .where('message_id', '=', old.id)
    .execute();

  // After the rotation: M_new's callback verifies under KEY_B — B's newest signed callback.
  const fresh = await proxied(appB.callbackUrl('/b/new'));
  const res = await postCxml(t.publicApp, fields(fresh.id, 'delivered'), {
    path: `/callbacks/cxml/${fresh.token}`,
    key: KEY_B,
  });
  expect(res.status).toBe(200);

  // Control: a token-admitted relay of B now is signed with KEY_B (B's newest signed callback).
  const controlTarget = appB.callbackUrl('/b/control');
  const control = await proxied(controlTarget);
  await tokenAdmitted(control.id, control.token, 'delivered');
  t.startWorker();
  const first = await eventually(() => appB.received.find((r) => r.messageId === control.id));
  expect(
    RestClient.validateRequest(
      KEY_B,
      String(first.headers['x-signalwire-signature'] ?? ''),
      controlTarget,
      Object.fromEntries(new URLSearchParams(first.body)),
    ),
  ).toBe(true);

  // Reconciliation finds M_old delivered (its callback lost): as reconcile-worker.ts does.
  const keyRef = await relaySigningKeyRef(db, old.id);
  expect(keyRef).toBe(signingKeyRef(KEY_B_RETIRED));
  const event = lookupEvent(
    { id: old.id, api: 'cxml', projectId: PROJECT_B, status: 'sent', errorCode: null },
    {
      status: 'delivered',
      from: '+15551234567',
      to: '+15557654321',
      num_segments: '1',
      num_media: '0',
    },
    new Date(),
    false,
    null,
    keyRef,
  );
  expect(event).not.toBeNull();
  await recordEvents(db, [event!], { existingOnly: true });

  // M3: a token-admitted (unsigned) callback of B: README — signed with the key that verified
  // the newest signed callback of B (KEY_B, M_new's).
  const target = appB.callbackUrl('/b/third');
  const third = await proxied(target);
  await tokenAdmitted(third.id, third.token, 'delivered');

  const relay = await eventually(() => appB.received.find((r) => r.messageId === third.id));
  const signature = String(relay.headers['x-signalwire-signature'] ?? '');
  const params = Object.fromEntries(new URLSearchParams(relay.body));
  expect(signature).not.toBe('');
  expect(RestClient.validateRequest(KEY_B, signature, target, params)).toBe(true);
});
