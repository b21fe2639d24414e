import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Error codes through the real callback and query routes: the rule of DESIGN §3 (a message
 * without a code takes the code an event brings, whatever its rank) and `error_reason`, the
 * per-API meaning of a code (SignalWire's, not Twilio's), on the message, on each history
 * entry and on list items.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When undelivered arrives, then undelivered with ErrorCode 30003, then the message has 30003 and its reason', async () => {
  const sid = randomUUID();
  expect(
    (await postCxml(t.publicApp, cxmlFields({ MessageSid: sid, MessageStatus: 'undelivered' })))
      .status,
  ).toBe(200);
  expect(
    (
      await postCxml(
        t.publicApp,
        cxmlFields({ MessageSid: sid, MessageStatus: 'undelivered', ErrorCode: '30003' }),
      )
    ).status,
  ).toBe(200);

  const res = await get(`/v1/messages/${sid}`).expect(200);
  expect(res.body).toMatchObject({
    status: 'undelivered',
    error_code: '30003',
    error_reason: 'Destination handset unreachable',
  });
  expect(
    res.body.history.map((h: { error_code: string | null; error_reason: string | null }) => [
      h.error_code,
      h.error_reason,
    ]),
  ).toEqual([
    [null, null],
    ['30003', 'Destination handset unreachable'],
  ]);
});

test('When a compatibility code means something else at Twilio, then the reason is SignalWire’s', async () => {
  const sid = randomUUID();
  await postCxml(
    t.publicApp,
    cxmlFields({ MessageSid: sid, MessageStatus: 'failed', ErrorCode: '30001' }),
  );
  const res = await get(`/v1/messages/${sid}`).expect(200);
  // Twilio's 30001 is "queue overflow".
  expect(res.body.error_reason).toBe('Validity period exceeded before the message could be sent');
});

test('When a native callback carries a string code, or a code not in the table, then the reason follows the native table or is null', async () => {
  const known = randomUUID();
  const unknown = randomUUID();
  await postNative(
    t.publicApp,
    nativeFields({ id: known, status: 'undelivered', error_code: 'carrier_violation' }),
  );
  await postNative(
    t.publicApp,
    nativeFields({ id: unknown, status: 'failed', error_code: 'brand_new_code' }),
  );
  expect((await get(`/v1/messages/${known}`).expect(200)).body).toMatchObject({
    api: 'native',
    error_code: 'carrier_violation',
    error_reason: 'Flagged as spam by the carrier',
  });
  expect((await get(`/v1/messages/${unknown}`).expect(200)).body).toMatchObject({
    error_code: 'brand_new_code',
    error_reason: null,
  });

  const list = await get('/v1/messages?api=native&status=undelivered&limit=500').expect(200);
  const item = list.body.data.find((m: { id: string }) => m.id === known);
  expect(item).toMatchObject({
    error_code: 'carrier_violation',
    error_reason: 'Flagged as spam by the carrier',
  });
  for (const message of list.body.data) expect(message).toHaveProperty('error_reason');
});

test('When a native failure says why without a code, then the message says it too, until a code comes', async () => {
  const sent = nativeFields({ status: 'sent', timestamp: '2026-03-17T22:26:50Z' });
  const id = sent['id'] as string;
  await postNative(t.publicApp, sent).expect(200);
  await postNative(
    t.publicApp,
    nativeFields({
      id,
      status: 'failed',
      timestamp: '2026-03-17T22:26:57Z',
      error_code: null,
      error_message: 'Message rejected by downstream carrier',
    }),
  ).expect(200);
  expect((await get(`/v1/messages/${id}`).expect(200)).body).toMatchObject({
    status: 'failed',
    error_code: null,
    error_message: 'Message rejected by downstream carrier',
  });

  // A code, once one comes, brings its own message (here none) and stays.
  await postNative(
    t.publicApp,
    nativeFields({
      id,
      status: 'undelivered',
      timestamp: '2026-03-17T22:26:55Z',
      error_code: '30003',
      error_message: null,
    }),
  ).expect(200);
  expect((await get(`/v1/messages/${id}`).expect(200)).body).toMatchObject({
    status: 'failed',
    conflict: true,
    error_code: '30003',
    error_message: null,
  });
});
