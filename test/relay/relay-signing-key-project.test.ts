import request from 'supertest';
import { RestClient } from '@signalwire/compatibility-api';
import type { Api } from '../../src/messages/statuses';
import { signJsonBody } from '../../src/signalwire/signing';
import { TEST_PROJECTS } from '../factories';
import { postCxml, postNative } from '../helpers/callbacks';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { createRelayTestApp, eventually, relayJobWhen, seedTokenBoundMessage } from './support';
import type { CustomerApp, ReceivedRelay, RelayTestApp } from './support';

/**
 * Several projects share one sw-status, their keys bound to them
 * (SIGNALWIRE_SIGNING_KEYS=project_a:KEY_A,project_b:KEY_B). A callback that comes by its
 * per-send token without a signature (native callbacks, whose signing is unconfirmed; or anyone
 * holding the token URL, which SignalWire's message resource echoes to the project) had no key
 * chosen for its relay, and the relay was signed with the FIRST key listed, project A's. Project
 * B chooses both where the relay goes (its StatusCallback: project A's own webhook, say) and what
 * it carries (the body as received), so sw-status signed project A's webhook requests for B.
 * Found by review. Now the key bound to the message's project signs, else a key bound to no
 * project, and never another project's: with only those, the relay goes unsigned. Of several
 * keys listed alone (bound to none), the one the project's signed callbacks last verified
 * under; with none such, the first only while the deployment names one project (a rotation),
 * else none: with the keys listed alone, the first was still project A's for B (review, diff1).
 */

const PROJECT_A = '11111111-2222-4333-8444-555555555555';
const KEY_A = 'PSK_project_a_key_aaaaaaaaaaaaaaaa';
/** Project B sends both formats: TEST_PROJECTS' two projects, one key each. */
const KEY_B = {
  cxml: 'PSK_project_b_cxml_key_bbbbbbbbbbb',
  native: 'PSK_project_b_native_key_bbbbbbbbb',
} as const;
/** A project with no key of its own. */
const PROJECT_C = '5d1f0c2a-9b7e-4c3d-8a6f-2e4b1d0c9f87';
const KEY_UNBOUND = 'PSK_unbound_key_uuuuuuuuuuuuuuuuuu';
const KEY_UNBOUND_2 = 'PSK_unbound_key_vvvvvvvvvvvvvvvvvv';

const APIS = ['cxml', 'native'] as const;

/** The message's callback, as its project's SignalWire would send it. */
function callbackFields(api: Api, id: string, project: string): Record<string, string> {
  return api === 'cxml'
    ? {
        MessageSid: id,
        MessageStatus: 'delivered',
        AccountSid: project,
        From: '+15551234567',
        To: '+15557654321',
        Body: 'chosen by whoever holds the token',
        NumMedia: '0',
      }
    : { id, project_id: project, status: 'delivered', to: '+15551234567', from: '+15559876543' };
}

/** Posts the callback by its token, unsigned. */
async function postUnsigned(
  t: RelayTestApp,
  api: Api,
  token: string,
  fields: Record<string, string>,
) {
  const body = api === 'cxml' ? new URLSearchParams(fields).toString() : JSON.stringify(fields);
  await request(t.publicApp)
    .post(`/callbacks/${api}/${token}`)
    .set('Content-Type', api === 'cxml' ? 'application/x-www-form-urlencoded' : 'application/json')
    .send(body)
    .expect(200);
}

/** Posts the callback by its token, signed with `key` as SignalWire signs. */
async function postSigned(
  t: RelayTestApp,
  api: Api,
  token: string,
  fields: Record<string, string>,
  key: string,
) {
  const path = `/callbacks/${api}/${token}`;
  const res =
    api === 'cxml'
      ? await postCxml(t.publicApp, fields, { path, key })
      : await postNative(t.publicApp, fields, { path, key });
  expect(res.status).toBe(200);
}

/**
 * Whether the relay validates under `key` for `url`, as an app checks it: the official SDK's
 * validateRequest for a form, the hex scheme (signJsonBody) for JSON.
 */
function validUnder(key: string, relay: ReceivedRelay, url: string): boolean {
  const signature = String(relay.headers['x-signalwire-signature'] ?? '');
  if (String(relay.headers['content-type']).startsWith('application/json')) {
    return signature === signJsonBody(key, url, relay.body);
  }
  const params = Object.fromEntries(new URLSearchParams(relay.body));
  return RestClient.validateRequest(key, signature, url, params);
}

function relayOf(app: CustomerApp, id: string, nth = 1): Promise<ReceivedRelay> {
  return eventually(() => app.received.filter((r) => r.messageId === id)[nth - 1]);
}

describe('every key bound to its project', () => {
  let t: RelayTestApp;
  let app: CustomerApp;

  beforeAll(async () => {
    t = await createRelayTestApp({
      SIGNALWIRE_SIGNING_KEYS: [
        `${PROJECT_A}:${KEY_A}`,
        `${TEST_PROJECTS.cxml}:${KEY_B.cxml}`,
        `${TEST_PROJECTS.native}:${KEY_B.native}`,
      ].join(','),
      RELAY_RETRY_SCHEDULE: '50ms',
    });
    app = await t.customerApp(KEY_A);
    t.startWorker();
  });
  afterAll(() => t.close());

  test.each(APIS)(
    'When project B’s unsigned %s callback comes by its token to be relayed to project A’s webhook, then the relay is signed with B’s key, never A’s',
    async (api) => {
      // Project B points its callback at project A's webhook.
      const target = app.callbackUrl(`/project-a/webhook/${api}`);
      const { id, token } = await seedTokenBoundMessage(
        t.database.db,
        api,
        target,
        TEST_PROJECTS[api],
      );
      const fields = callbackFields(api, id, TEST_PROJECTS[api]);
      await postUnsigned(t, api, token, fields);

      const relay = await relayOf(app, id);
      expect(validUnder(KEY_A, relay, target)).toBe(false);
      expect(relay.valid).toBe(false);
      expect(validUnder(KEY_B[api], relay, target)).toBe(true);
    },
  );

  test.each(APIS)(
    'When a message’s project has no key and only other projects’ keys are listed, then its %s relay goes unsigned',
    async (api) => {
      const target = app.callbackUrl(`/project-c/status/${api}`);
      const { id, token } = await seedTokenBoundMessage(t.database.db, api, target, PROJECT_C);
      await postUnsigned(t, api, token, callbackFields(api, id, PROJECT_C));

      const relay = await relayOf(app, id);
      expect(relay.headers).not.toHaveProperty('x-signalwire-signature');
      expect(relay.headers).not.toHaveProperty('x-twilio-signature');
      expect(relay.headers).not.toHaveProperty('x-signalwire-sha256-signature');
    },
  );

  test.each(APIS)(
    'When project B’s dead %s relay is retried through the API, then it is signed with B’s key again',
    async (api) => {
      const target = app.callbackUrl(`/project-b/status/${api}`);
      const { id, token } = await seedTokenBoundMessage(
        t.database.db,
        api,
        target,
        TEST_PROJECTS[api],
      );
      // Both scheduled attempts fail; the retry through the API is answered.
      app.behave(id, (n) => ({ status: n <= 2 ? 500 : 200 }));
      await postUnsigned(t, api, token, callbackFields(api, id, TEST_PROJECTS[api]));
      const dead = await relayJobWhen(t.database.db, id, (job) => job.state === 'dead');
      await request(t.internalApp)
        .post(`/v1/relays/${dead.id}/retry`)
        .set('Authorization', `Bearer ${TEST_API_TOKEN}`)
        .expect(200);

      const retried = await relayOf(app, id, 3);
      expect(retried.answered).toBe(200);
      expect(validUnder(KEY_A, retried, target)).toBe(false);
      expect(validUnder(KEY_B[api], retried, target)).toBe(true);
    },
  );
});

describe('one key bound to project A, two listed alone', () => {
  let t: RelayTestApp;
  let app: CustomerApp;

  beforeAll(async () => {
    t = await createRelayTestApp({
      SIGNALWIRE_SIGNING_KEYS: `${PROJECT_A}:${KEY_A},${KEY_UNBOUND},${KEY_UNBOUND_2}`,
      RELAY_RETRY_SCHEDULE: '50ms',
    });
    app = await t.customerApp(KEY_UNBOUND);
    t.startWorker();
  });
  afterAll(() => t.close());

  test.each(APIS)(
    'When the message’s project has no bound key and no signed callback yet, then its unsigned %s callback is relayed unsigned: the keys listed alone may be other projects’ than A',
    async (api) => {
      const target = app.callbackUrl(`/project-b/status/${api}`);
      const { id, token } = await seedTokenBoundMessage(
        t.database.db,
        api,
        target,
        TEST_PROJECTS[api],
      );
      await postUnsigned(t, api, token, callbackFields(api, id, TEST_PROJECTS[api]));

      const relay = await relayOf(app, id);
      expect(relay.headers).not.toHaveProperty('x-signalwire-signature');
      expect(validUnder(KEY_A, relay, target)).toBe(false);
    },
  );

  test.each(APIS)(
    'When a %s callback by token is signed with the second key listed alone, then its relay keeps the key that verified it',
    async (api) => {
      const target = app.callbackUrl(`/project-b/signed/${api}`);
      const { id, token } = await seedTokenBoundMessage(
        t.database.db,
        api,
        target,
        TEST_PROJECTS[api],
      );
      await postSigned(t, api, token, callbackFields(api, id, TEST_PROJECTS[api]), KEY_UNBOUND_2);

      const relay = await relayOf(app, id);
      expect(validUnder(KEY_UNBOUND_2, relay, target)).toBe(true);
      expect(relay.valid).toBe(false);
    },
  );

  test.each(APIS)(
    'When the project’s callbacks have verified under the second key listed alone, then its next unsigned %s callback is relayed signed with that key',
    async (api) => {
      const target = app.callbackUrl(`/project-b/after/${api}`);
      const { id, token } = await seedTokenBoundMessage(
        t.database.db,
        api,
        target,
        TEST_PROJECTS[api],
      );
      await postUnsigned(t, api, token, callbackFields(api, id, TEST_PROJECTS[api]));

      const relay = await relayOf(app, id);
      expect(validUnder(KEY_UNBOUND_2, relay, target)).toBe(true);
      expect(validUnder(KEY_A, relay, target)).toBe(false);
    },
  );
});

describe('two keys listed alone, two projects sharing sw-status', () => {
  const KEY_A_ALONE = 'PSK_project_a_alone_aaaaaaaaaaaaaaa';
  const KEY_B_ALONE = 'PSK_project_b_alone_bbbbbbbbbbbbbbb';
  const PROJECT_B = TEST_PROJECTS.cxml;
  let t: RelayTestApp;
  let appA: CustomerApp;
  let appB: CustomerApp;

  beforeAll(async () => {
    t = await createRelayTestApp({
      SIGNALWIRE_SIGNING_KEYS: `${KEY_A_ALONE},${KEY_B_ALONE}`,
      SIGNALWIRE_PROJECT_IDS: `${PROJECT_A},${PROJECT_B}`,
      RELAY_RETRY_SCHEDULE: '50ms',
    });
    appA = await t.customerApp(KEY_A_ALONE);
    appB = await t.customerApp(KEY_B_ALONE);
    t.startWorker();
  });
  afterAll(() => t.close());

  test('When project B has had no signed callback and its token holder posts one unsigned for A’s webhook, then the relay goes unsigned, not signed with the first key', async () => {
    const target = appA.callbackUrl('/project-a/webhook/before');
    const { id, token } = await seedTokenBoundMessage(t.database.db, 'cxml', target, PROJECT_B);
    await postUnsigned(t, 'cxml', token, callbackFields('cxml', id, PROJECT_B));

    const relay = await relayOf(appA, id);
    expect(relay.headers).not.toHaveProperty('x-signalwire-signature');
    expect(validUnder(KEY_A_ALONE, relay, target)).toBe(false);
  });

  test('When project B’s callbacks verified under its key and its token holder posts one unsigned for A’s webhook, then the relay is signed with B’s key, never A’s', async () => {
    // Project B's genuine callback verifies under KEY_B_ALONE: sw-status has seen B's key.
    const own = await seedTokenBoundMessage(
      t.database.db,
      'cxml',
      appB.callbackUrl('/b/status'),
      PROJECT_B,
    );
    await postSigned(t, 'cxml', own.token, callbackFields('cxml', own.id, PROJECT_B), KEY_B_ALONE);
    expect((await relayOf(appB, own.id)).valid).toBe(true);

    // Then B points a message's StatusCallback at project A's webhook and posts by its token.
    const target = appA.callbackUrl('/project-a/webhook/after');
    const { id, token } = await seedTokenBoundMessage(t.database.db, 'cxml', target, PROJECT_B);
    await postUnsigned(t, 'cxml', token, callbackFields('cxml', id, PROJECT_B));

    const relay = await relayOf(appA, id);
    expect(relay.valid).toBe(false);
    expect(validUnder(KEY_A_ALONE, relay, target)).toBe(false);
    expect(validUnder(KEY_B_ALONE, relay, target)).toBe(true);
  });
});

describe('one project, two keys listed alone (a rotation)', () => {
  const KEY_OLD = 'PSK_rotation_old_key_oooooooooooooo';
  const KEY_NEW = 'PSK_rotation_new_key_nnnnnnnnnnnnnn';
  let t: RelayTestApp;
  let app: CustomerApp;

  beforeAll(async () => {
    t = await createRelayTestApp({
      SIGNALWIRE_SIGNING_KEYS: `${KEY_OLD},${KEY_NEW}`,
      SIGNALWIRE_PROJECT_IDS: TEST_PROJECTS.cxml,
      RELAY_RETRY_SCHEDULE: '50ms',
    });
    app = await t.customerApp(KEY_OLD);
    t.startWorker();
  });
  afterAll(() => t.close());

  test('When the project has had no signed callback, then its unsigned callback is relayed signed with the first key', async () => {
    const target = app.callbackUrl('/status');
    const { id, token } = await seedTokenBoundMessage(
      t.database.db,
      'cxml',
      target,
      TEST_PROJECTS.cxml,
    );
    await postUnsigned(t, 'cxml', token, callbackFields('cxml', id, TEST_PROJECTS.cxml));

    const relay = await relayOf(app, id);
    expect(relay.valid).toBe(true);
  });
});
