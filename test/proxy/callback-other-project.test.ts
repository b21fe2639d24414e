import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN } from '../helpers/test-app';
import {
  compatMessageResource,
  compatNotFound,
  outcomeOf,
  sdkClient,
  startRedactionStack,
} from './support';
import type { RedactionStack } from './support';

/**
 * One sw-status for two SignalWire projects, each signing its callbacks with its own key
 * (README: "several projects with their own keys can share one sw-status"). A callback signed
 * with project B's key, naming project B, for a message project A sent through the proxy, is
 * no genuine callback (SignalWire signs A's callbacks with A's key and names A): it must not
 * change A's message — its status, its project — nor open the way for B's credentials to wipe
 * A's text ("another project's credentials can never wipe a message's text"). It did both.
 * Found by review.
 */

const PROJECT_A = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN_A = 'PTprojectAtoken';
const KEY_A = 'PSK_project_a_signing_key_000000';
const PROJECT_B = '0f6c3b59-6a2d-4a53-9f1e-5a6d0c7b8e21';
const TOKEN_B = 'PTprojectBtoken';
const KEY_B = 'PSK_project_b_signing_key_111111';

let stack: RedactionStack;

beforeAll(async () => {
  stack = await startRedactionStack(
    { project: PROJECT_A, token: TOKEN_A },
    {
      SIGNALWIRE_SIGNING_KEYS: `${KEY_A},${KEY_B}`,
      SIGNALWIRE_PROJECT_IDS: `${PROJECT_A},${PROJECT_B}`,
    },
  );
});
afterAll(() => stack.close());

async function message(sid: string) {
  const res = await request(stack.t.internalApp)
    .get(`/v1/messages/${sid}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  expect(res.status).toBe(200);
  return res.body as { project_id: string | null; status: string; error_code: string | null };
}

/** A's genuine `sent` callback, signed with A's key. */
async function sentByA(sid: string): Promise<void> {
  const res = await postCxml(
    stack.t.publicApp,
    cxmlFields({ MessageSid: sid, AccountSid: PROJECT_A, MessageStatus: 'sent' }),
    { key: KEY_A },
  );
  expect(res.status).toBe(200);
}

/** A callback project B signs with its own key, naming itself, about A's message. */
function forgedByB(sid: string, status: Record<string, string>) {
  return postCxml(
    stack.t.publicApp,
    cxmlFields({ MessageSid: sid, AccountSid: PROJECT_B, ...status }),
    { key: KEY_B },
  );
}

test("When a callback signed with project B's key and naming project B comes for project A's message, then A's message keeps its status and its project", async () => {
  const sid = await stack.send('hello from A');
  await sentByA(sid);
  expect(await message(sid)).toMatchObject({ project_id: PROJECT_A, status: 'sent' });

  const refused = await forgedByB(sid, { MessageStatus: 'undelivered', ErrorCode: '30008' });
  expect(refused.status).toBe(403);
  expect(refused.body).toMatchObject({ error: { code: 'project_mismatch' } });

  expect(await message(sid)).toMatchObject({
    project_id: PROJECT_A,
    status: 'sent',
    error_code: null,
  });
});

test("When project B has signed a callback naming itself for A's message, then B's deletion answered 404 still cannot wipe A's text", async () => {
  const sid = await stack.send('A one-time code 424242');
  await sentByA(sid);

  // B's own app sends through the proxy: SignalWire has accepted B's credentials.
  const bSid = randomUUID();
  stack.answer = () => ({
    status: 201,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(compatMessageResource(PROJECT_B, bSid, 'hello from B')),
  });
  await sdkClient(stack.proxy.url, PROJECT_B, TOKEN_B).messages.create({
    to: '+15557654321',
    from: '+15551234567',
    body: 'hello from B',
  });

  await forgedByB(sid, { MessageStatus: 'delivered' });

  // SignalWire answers B's deletion of A's message 404: it is not B's.
  stack.answer = () => compatNotFound;
  expect(
    await outcomeOf(sdkClient(stack.proxy.url, PROJECT_B, TOKEN_B).messages(sid).remove()),
  ).toBe(404);

  const stored = await stack.stored(sid);
  expect(stored.status).toBe(200);
  expect(JSON.stringify(stored.body)).toContain('424242');
});

test("When A's own callback names A's project in upper case, then it is A's project and the callback is recorded", async () => {
  // Project ids are UUIDs, which compare without case: the proxy records A's send in lower case
  // (SIGNALWIRE_PROJECT_IDS and credentials are lower-cased), and a callback that spells the
  // same id in upper case was refused as another project's (403 project_mismatch).
  const sid = await stack.send('hello from A');
  const res = await postCxml(
    stack.t.publicApp,
    cxmlFields({ MessageSid: sid, AccountSid: PROJECT_A.toUpperCase(), MessageStatus: 'sent' }),
    { key: KEY_A },
  );
  expect(res.status).toBe(200);
  expect(await message(sid)).toMatchObject({ project_id: PROJECT_A, status: 'sent' });
});
