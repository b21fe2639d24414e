import request from 'supertest';
import { RestClient } from '@signalwire/compatibility-api';
import { recordEvents } from '../../src/messages/record-events';
import { lookupEvent } from '../../src/reconcile/lookup-event';
import { relaySigningKeyRef } from '../../src/reconcile/reconcile.repository';
import { signingKeyRef } from '../../src/signalwire/signing';
import { TEST_PROJECTS } from '../factories';
import { postCxml } from '../helpers/callbacks';
import { createRelayTestApp, eventually, seedTokenBoundMessage } from './support';
import type { CustomerApp, ReceivedRelay, RelayTestApp } from './support';

/**
 * A project's signing key rotated: several keys listed alone, several projects named, and a
 * relay that no key configured now signed — it names none, or a key rotated away — is signed
 * with the key that verified the newest signed callback of its message's project (README,
 * signing.ts relaySigningKey; messages/project-signing-key.ts reads it). Both found by review:
 * - The claim read the project's key only for jobs with no key reference: a job naming a key no
 *   longer configured went out unsigned, although the project's newer callbacks verified under
 *   a key still listed.
 * - project-signing-key.ts picked the project's newest relay job naming ANY key, also one no
 *   longer configured. Reconciliation (relaySigningKeyRef) copies the message's own old ref onto
 *   a NEW relay job: after a rotation, a lookup for a message whose callbacks verified under the
 *   retired key became the project's newest "signed" job, and every later relay of the project
 *   that asks for the project's key went unsigned.
 * The retired key's reference is simulated as what the old key left on the job.
 */

const PROJECT_A = '11111111-2222-4333-8444-555555555555';
const PROJECT_B = TEST_PROJECTS.cxml;
const KEY_A = 'PSK_project_a_alone_aaaaaaaaaaaaaaa';
const KEY_B = 'PSK_project_b_alone_bbbbbbbbbbbbbbb';
/** Project B's previous key: verified some of its callbacks, then removed from the configuration. */
const KEY_B_RETIRED = 'PSK_project_b_retired_rrrrrrrrrrrrr';

// A service per test, as if in files of their own: which relay is the project's newest is
// what each test is about.
let t: RelayTestApp;
let appB: CustomerApp;
beforeEach(async () => {
  t = await createRelayTestApp({
    SIGNALWIRE_SIGNING_KEYS: `${KEY_A},${KEY_B}`,
    SIGNALWIRE_PROJECT_IDS: `${PROJECT_A},${PROJECT_B}`,
    RELAY_RETRY_SCHEDULE: '50ms',
  });
  appB = await t.customerApp(KEY_B);
});
afterEach(() => t.close());

/** A message of project B sent through the proxy with `callback`, its token minted. */
const proxied = (callback: string) =>
  seedTokenBoundMessage(t.database.db, 'cxml', callback, PROJECT_B);

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

/** A callback admitted by the message's token alone: no signature chose a key for it. */
async function tokenAdmitted(id: string, token: string, status: string): Promise<void> {
  await request(t.publicApp)
    .post(`/callbacks/cxml/${token}`)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send(new URLSearchParams(fields(id, status)).toString())
    .expect(200);
}

test('When a pending relay’s key was rotated away and the project’s newer callbacks verified under its current key, then the relay is signed with that key (README), not sent unsigned', async () => {
  // M2: its callback verified under B's old key (simulated: the ref is what the old key left).
  const targetOld = appB.callbackUrl('/b/rotated');
  const m2 = await proxied(targetOld);
  await tokenAdmitted(m2.id, m2.token, 'delivered');
  await t.database.db
    .updateTable('relay_jobs')
    .set({ signing_key_ref: signingKeyRef(KEY_B_RETIRED) })
    .where('message_id', '=', m2.id)
    .execute();

  // M1, later: B's callbacks now verify under KEY_B (the newest signed callback of B).
  const m1 = await proxied(appB.callbackUrl('/b/current'));
  const res = await postCxml(t.publicApp, fields(m1.id, 'delivered'), {
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
