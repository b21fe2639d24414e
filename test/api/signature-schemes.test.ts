import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { sha256Hex, signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields, postCxml } from '../helpers/callbacks';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * DESIGN §2 "The scheme follows the body", through HTTP. Both of SignalWire's schemes are
 * HMAC-SHA1 under the same key, so a signature made for one kind of request must never be
 * tried on the other kind: issue 9 item 2 forged a status for any message id that way.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    SIGNALWIRE_SIGNING_KEYS: `PSK_old_key_0123456789,${TEST_SIGNING_KEY}`,
  });
});
afterAll(() => t.close());

async function message(id: string) {
  return request(t.internalApp).get(`/v1/messages/${id}`).auth(TEST_API_TOKEN, { type: 'bearer' });
}

test('When a genuine form signature is re-sent as hex over a raw body equal to the signed string, then 403 and the victim is untouched', async () => {
  const victim = cxmlFields({ MessageStatus: 'delivered' });
  await postCxml(t.publicApp, victim).expect(200);

  // The attacker's own message carries a body that, once the signed string is read as a
  // form, names the victim. SignalWire signs the attacker's callback genuinely.
  const url = `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`;
  const own = cxmlFields({
    Body: `=x&MessageSid=${victim.MessageSid}&MessageStatus=failed&ErrorCode=30008&Z=`,
  });
  const genuine = signFormParams(TEST_SIGNING_KEY, url, Object.entries(own));
  const signedString = Object.entries(own)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => k + v)
    .join('');
  const forged = Buffer.from(genuine, 'base64').toString('hex');
  // The premise of the forgery: scheme A over this body computes the same MAC.
  expect(signJsonBody(TEST_SIGNING_KEY, url, signedString)).toBe(forged);
  expect(new URLSearchParams(signedString).get('MessageSid')).toBe(victim.MessageSid);

  const res = await request(t.publicApp)
    .post('/callbacks/cxml')
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .set('X-SignalWire-Signature', forged)
    .send(signedString);
  expect(res.status).toBe(403);
  expect(res.body.error.code).toBe('invalid_signature');
  const { body } = await message(victim.MessageSid!);
  expect(body.status).toBe('delivered');
  expect(body.history).toHaveLength(1);
});

test('When a JSON body comes with a base64 signature over the URL alone, then 403 (the signed GET it was made for still works)', async () => {
  // A genuine GET callback: its signature covers the URL only.
  const fields = cxmlFields({ MessageStatus: 'sent' });
  const path = `/callbacks/cxml?${new URLSearchParams(fields).toString()}`;
  const overUrl = signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, []);

  const victim = randomUUID();
  const res = await request(t.publicApp)
    .post(path)
    .set('Content-Type', 'application/json')
    .set('X-SignalWire-Signature', overUrl)
    .send(JSON.stringify({ MessageSid: victim, MessageStatus: 'failed', ErrorCode: '30008' }));
  expect(res.status).toBe(403);
  expect((await message(victim)).status).toBe(404);

  await request(t.publicApp).get(path).set('X-SignalWire-Signature', overUrl).expect(200);
});

test('When a JSON body is signed Twilio-style (URL with a matching bodySHA256), then it verifies; with another body, 403', async () => {
  const body = JSON.stringify(nativeFields());
  const path = `/callbacks/native?bodySHA256=${sha256Hex(body)}`;
  const signature = signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, []);
  const send = (raw: string) =>
    request(t.publicApp)
      .post(path)
      .set('Content-Type', 'application/json')
      .set('X-SignalWire-Signature', signature)
      .send(raw);
  await send(body).expect(200);
  await send(JSON.stringify(nativeFields())).expect(403);
});

test('When the form and JSON schemes are each used for their own body, with either configured key, then both verify', async () => {
  await postCxml(t.publicApp, cxmlFields(), { key: 'PSK_old_key_0123456789' }).expect(200);
  const body = JSON.stringify(nativeFields());
  await request(t.publicApp)
    .post('/callbacks/native')
    .set('Content-Type', 'application/json')
    .set(
      'X-SignalWire-Signature',
      signJsonBody(TEST_SIGNING_KEY, `${TEST_PUBLIC_BASE_URL}/callbacks/native`, body),
    )
    .send(body)
    .expect(200);
});

test('When a signature verifies, then the index of the key that verified travels with the event', async () => {
  const recorded: Array<number | undefined> = [];
  const original = t.deps.recorder.record.bind(t.deps.recorder);
  const spy = jest.spyOn(t.deps.recorder, 'record').mockImplementation((event) => {
    recorded.push(event.verifiedKeyIndex);
    return original(event);
  });
  try {
    await postCxml(t.publicApp, cxmlFields(), { key: 'PSK_old_key_0123456789' }).expect(200);
    await postCxml(t.publicApp, cxmlFields()).expect(200);
  } finally {
    spy.mockRestore();
  }
  expect(recorded).toEqual([0, 1]);
});
