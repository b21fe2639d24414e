import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Several projects sharing one sw-status, each signing with its own key. Written
 * `project_id:signing_key`, a key speaks for its own project only: with project B's key, B
 * cannot sign a callback that names project A, nor one that names no project, about A's
 * message. Unbound, a key still verifies every project's callbacks (README).
 */

const PROJECT_A = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const KEY_A = 'PSK_project_a_signing_key_000000';
const PROJECT_B = '0f6c3b59-6a2d-4a53-9f1e-5a6d0c7b8e21';
const KEY_B = 'PSK_project_b_signing_key_111111';
const PROJECT_C = '5d1f0c2a-9b7e-4c3d-8a6f-2e4b1d0c9f87';
const KEY_UNBOUND = 'PSK_unbound_signing_key_22222222';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    // A's project in capitals: SignalWire's callbacks name it in lower case.
    SIGNALWIRE_SIGNING_KEYS: `${PROJECT_A.toUpperCase()}:${KEY_A}, ${PROJECT_B} : ${KEY_B},${KEY_UNBOUND}`,
  });
});
afterAll(() => t.close());

async function message(id: string) {
  const res = await request(t.internalApp)
    .get(`/v1/messages/${id}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  return res.body as { project_id: string | null; status: string; history?: unknown[] };
}

/** A's genuine callback: A's key, naming A. */
async function sentByA(id: string): Promise<void> {
  const res = await postCxml(
    t.publicApp,
    cxmlFields({ MessageSid: id, AccountSid: PROJECT_A, MessageStatus: 'sent' }),
    { key: KEY_A },
  );
  expect(res.status).toBe(200);
}

test("When project B signs, with its own bound key, a callback naming project A about A's message, then it is refused project_mismatch and A's message is untouched", async () => {
  const id = randomUUID();
  await sentByA(id);

  const forged = await postCxml(
    t.publicApp,
    cxmlFields({ MessageSid: id, AccountSid: PROJECT_A, MessageStatus: 'undelivered' }),
    { key: KEY_B },
  );
  expect(forged.status).toBe(403);
  expect(forged.body).toMatchObject({ error: { code: 'project_mismatch' } });
  expect(await message(id)).toMatchObject({ project_id: PROJECT_A, status: 'sent' });
});

test('When project B signs a callback naming project A about a message sw-status has not seen, then it is refused and no message is created', async () => {
  const id = randomUUID();
  const forged = await postNative(
    t.publicApp,
    nativeFields({ id, project_id: PROJECT_A, status: 'delivered' }),
    { key: KEY_B },
  );
  expect(forged.status).toBe(403);
  expect(forged.body).toMatchObject({ error: { code: 'project_mismatch' } });
  const res = await request(t.internalApp)
    .get(`/v1/messages/${id}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
  expect(res.status).toBe(404);
});

test("When project B signs a callback naming no project about A's message, then it is taken as B's and refused project_mismatch", async () => {
  const id = randomUUID();
  await sentByA(id);
  const fields = cxmlFields({ MessageSid: id, MessageStatus: 'undelivered' });
  delete fields['AccountSid'];

  const forged = await postCxml(t.publicApp, fields, { key: KEY_B });
  expect(forged.status).toBe(403);
  expect(forged.body).toMatchObject({ error: { code: 'project_mismatch' } });
  expect(await message(id)).toMatchObject({ project_id: PROJECT_A, status: 'sent' });
});

test('When a bound key signs a callback naming no project about a new message, then the message belongs to the key’s project', async () => {
  const id = randomUUID();
  const res = await postNative(t.publicApp, nativeFields({ id, project_id: undefined }), {
    key: KEY_B,
  });
  expect(res.status).toBe(200);
  expect(await message(id)).toMatchObject({ project_id: PROJECT_B, status: 'delivered' });
});

test('When each project signs its own callbacks with its bound key, then both are stored, in both formats', async () => {
  const a = randomUUID();
  const b = randomUUID();
  expect(
    (
      await postCxml(t.publicApp, cxmlFields({ MessageSid: a, AccountSid: PROJECT_A }), {
        key: KEY_A,
      })
    ).status,
  ).toBe(200);
  expect(
    (await postNative(t.publicApp, nativeFields({ id: b, project_id: PROJECT_B }), { key: KEY_B }))
      .status,
  ).toBe(200);
  expect(await message(a)).toMatchObject({ project_id: PROJECT_A, status: 'delivered' });
  expect(await message(b)).toMatchObject({ project_id: PROJECT_B, status: 'delivered' });
});

test('When a key is listed without a project, then it still verifies a callback of any project', async () => {
  const id = randomUUID();
  const res = await postCxml(
    t.publicApp,
    cxmlFields({ MessageSid: id, AccountSid: PROJECT_C, MessageStatus: 'sent' }),
    { key: KEY_UNBOUND },
  );
  expect(res.status).toBe(200);
  expect(await message(id)).toMatchObject({ project_id: PROJECT_C, status: 'sent' });
});
