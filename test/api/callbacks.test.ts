import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { recordEvents } from '../../src/messages/record-events';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { statusEvent } from '../factories';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_TOKEN_SECRET,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

async function getMessage(id: string) {
  const res = await request(t.internalApp)
    .get(`/v1/messages/${id}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  return res;
}

describe('compatibility (cXML) callbacks', () => {
  test.each([
    ['queued', 'queued'],
    ['sending', 'sending'],
    ['initiated', 'sending'],
    ['sent', 'sent'],
    ['delivered', 'delivered'],
    ['undelivered', 'undelivered'],
    ['failed', 'failed'],
    ['receiving', 'receiving'],
    ['received', 'received'],
  ])(
    'When MessageStatus=%s arrives, then it is stored as %s and answered with <Response/>',
    async (raw, canonical) => {
      const fields = cxmlFields({ MessageStatus: raw });
      const res = await postCxml(t.publicApp, fields);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/xml/);
      expect(res.text).toBe('<Response/>');
      const message = await getMessage(fields.MessageSid!);
      expect(message.body).toMatchObject({ status: canonical, raw_status: raw, api: 'cxml' });
      expect(message.body.history).toHaveLength(1);
    },
  );

  test('When an undelivered callback carries ErrorCode, then the code is stored as text', async () => {
    const fields = cxmlFields({ MessageStatus: 'undelivered', ErrorCode: '30003' });
    await postCxml(t.publicApp, fields).expect(200);
    const { body } = await getMessage(fields.MessageSid!);
    expect(body.error_code).toBe('30003');
    expect(body.history[0].error_code).toBe('30003');
  });

  test('When the callback is signed as X-Twilio-Signature, then it is accepted', async () => {
    const fields = cxmlFields();
    await postCxml(t.publicApp, fields, { header: 'X-Twilio-Signature' }).expect(200);
  });

  test('When the callback is JSON instead of form, then it is accepted (scheme A)', async () => {
    const fields = cxmlFields({ MessageStatus: 'sent' });
    const body = JSON.stringify(fields);
    await request(t.publicApp)
      .post('/callbacks/cxml')
      .set('Content-Type', 'application/json')
      .set(
        'X-SignalWire-Signature',
        signJsonBody(
          'PSK_test_signing_key_0123456789',
          `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`,
          body,
        ),
      )
      .send(body)
      .expect(200);
    expect((await getMessage(fields.MessageSid!)).body.status).toBe('sent');
  });

  test('When an Application calls back with GET and query parameters, then it is accepted', async () => {
    const fields = cxmlFields({ MessageStatus: 'sent' });
    const path = `/callbacks/cxml?${new URLSearchParams(fields).toString()}`;
    const signature = signFormParams(
      'PSK_test_signing_key_0123456789',
      TEST_PUBLIC_BASE_URL + path,
      [],
    );
    await request(t.publicApp).get(path).set('X-SignalWire-Signature', signature).expect(200);
    expect((await getMessage(fields.MessageSid!)).body.status).toBe('sent');
  });

  test('When the body is not stored (default), then raw has no Body but keeps other fields', async () => {
    const fields = cxmlFields({ Body: 'secret text' });
    await postCxml(t.publicApp, fields).expect(200);
    const row = await t.database.db
      .selectFrom('status_events')
      .select('raw')
      .where('message_id', '=', fields.MessageSid!)
      .executeTakeFirstOrThrow();
    expect(row.raw).not.toHaveProperty('Body');
    expect(row.raw).toHaveProperty('AccountSid', fields.AccountSid);
  });
});

describe('native callbacks', () => {
  test.each([
    ['queued', 'queued'],
    ['initiated', 'sending'],
    ['sent', 'sent'],
    ['delivered', 'delivered'],
    ['undelivered', 'undelivered'],
    ['failed', 'failed'],
    ['read', 'read'],
  ])(
    'When status=%s arrives, then it is stored as %s with an empty 200',
    async (raw, canonical) => {
      const fields = nativeFields({ status: raw });
      const res = await postNative(t.publicApp, fields);
      expect(res.status).toBe(200);
      expect(res.text).toBe('');
      const { body } = await getMessage(fields.id as string);
      expect(body).toMatchObject({ status: canonical, raw_status: raw, api: 'native' });
      expect(body.history[0].provider_timestamp).toBe('2026-03-17T22:26:57.000Z');
    },
  );

  test('When a failed callback carries error_code and error_message, then both are kept', async () => {
    const fields = nativeFields({
      status: 'failed',
      error_code: 'carrier_violation',
      error_message: 'Filtered',
    });
    await postNative(t.publicApp, fields).expect(200);
    expect((await getMessage(fields.id as string)).body).toMatchObject({
      error_code: 'carrier_violation',
      error_message: 'Filtered',
    });
  });
});

describe('the truth about a message (DESIGN §3)', () => {
  test('When sent arrives after delivered, then delivered stays and both are in the history', async () => {
    const id = randomUUID();
    await postNative(
      t.publicApp,
      nativeFields({ id, status: 'delivered', timestamp: '2026-11-01T10:00:02Z' }),
    ).expect(200);
    await postNative(
      t.publicApp,
      nativeFields({ id, status: 'sent', timestamp: '2026-11-01T10:00:01Z' }),
    ).expect(200);
    const { body } = await getMessage(id);
    expect(body.status).toBe('delivered');
    expect(body.history.map((h: { status: string }) => h.status)).toEqual(['delivered', 'sent']);
  });

  test('When the same callback arrives twice, then both are acknowledged and one row is stored', async () => {
    const fields = cxmlFields({ MessageStatus: 'sent' });
    await postCxml(t.publicApp, fields).expect(200);
    await postCxml(t.publicApp, fields).expect(200);
    expect((await getMessage(fields.MessageSid!)).body.history).toHaveLength(1);
  });

  test('When the same status comes with another error code or timestamp, then it is a new event', async () => {
    const id = randomUUID();
    await postNative(
      t.publicApp,
      nativeFields({ id, status: 'sent', timestamp: '2026-11-01T10:00:01Z' }),
    ).expect(200);
    await postNative(
      t.publicApp,
      nativeFields({ id, status: 'sent', timestamp: '2026-11-01T10:00:02Z' }),
    ).expect(200);
    expect((await getMessage(id)).body.history).toHaveLength(2);
  });

  test('When delivered and undelivered disagree, then the later provider timestamp wins and conflict is set', async () => {
    const id = randomUUID();
    await postNative(
      t.publicApp,
      nativeFields({
        id,
        status: 'undelivered',
        error_code: '30003',
        timestamp: '2026-11-01T10:00:09Z',
      }),
    ).expect(200);
    await postNative(
      t.publicApp,
      nativeFields({ id, status: 'delivered', timestamp: '2026-11-01T10:00:05Z' }),
    ).expect(200);
    const { body } = await getMessage(id);
    expect(body).toMatchObject({ status: 'undelivered', error_code: '30003', conflict: true });
    expect(body.history).toHaveLength(2);
  });

  test('When a callback carries a provider timestamp far in the future, then a later outcome still wins the conflict (the stamp stands at its receipt)', async () => {
    const id = randomUUID();
    await postNative(
      t.publicApp,
      nativeFields({ id, status: 'delivered', timestamp: '9999-12-31T23:59:59Z' }),
    ).expect(200);
    await postNative(
      t.publicApp,
      nativeFields({
        id,
        status: 'undelivered',
        error_code: '30003',
        timestamp: new Date().toISOString(),
      }),
    ).expect(200);
    const { body } = await getMessage(id);
    expect(body).toMatchObject({ status: 'undelivered', error_code: '30003', conflict: true });
    // The history keeps the timestamp as SignalWire sent it.
    expect(
      body.history.map((event: { provider_timestamp: string }) => event.provider_timestamp),
    ).toContain('9999-12-31T23:59:59.000Z');
  });

  test('When undelivered with 30003 and a later delivered arrive in either order, then the message ends delivered, flagged, and keeps the code (DESIGN §3: never erased by an event without one)', async () => {
    const states = [];
    for (const winnerFirst of [false, true]) {
      const id = randomUUID();
      const undelivered = nativeFields({
        id,
        status: 'undelivered',
        error_code: '30003',
        error_message: 'unreachable',
        timestamp: '2026-03-17T22:26:01Z',
      });
      const delivered = nativeFields({
        id,
        status: 'delivered',
        timestamp: '2026-03-17T22:26:05Z',
      });
      for (const fields of winnerFirst ? [delivered, undelivered] : [undelivered, delivered]) {
        await postNative(t.publicApp, fields).expect(200);
      }
      const { body } = await getMessage(id);
      states.push({
        status: body.status,
        conflict: body.conflict,
        error_code: body.error_code,
        error_message: body.error_message,
      });
    }
    const expected = {
      status: 'delivered',
      conflict: true,
      error_code: '30003',
      error_message: 'unreachable',
    };
    expect(states).toEqual([expected, expected]);
  });

  test('When read, delivered and undelivered arrive in any order, then the message ends read and flagged a conflict in every order (the fold above rank 50 cannot see the outcomes: the history decides)', async () => {
    const read = { status: 'read', timestamp: '2026-03-17T22:26:30Z' };
    const delivered = { status: 'delivered', timestamp: '2026-03-17T22:26:10Z' };
    const undelivered = {
      status: 'undelivered',
      error_code: '30003',
      timestamp: '2026-03-17T22:26:20Z',
    };
    const orders = [
      [delivered, undelivered, read],
      [read, delivered, undelivered],
      [read, undelivered, delivered],
      [delivered, read, undelivered],
      [undelivered, read, delivered],
    ];
    const states = [];
    for (const order of orders) {
      const id = randomUUID();
      for (const fields of order)
        await postNative(t.publicApp, nativeFields({ id, ...fields })).expect(200);
      const { body } = await getMessage(id);
      states.push({ status: body.status, conflict: body.conflict, error_code: body.error_code });
    }
    const expected = { status: 'read', conflict: true, error_code: '30003' };
    expect(states).toEqual(orders.map(() => expected));

    // One outcome only, read first: no conflict (a repeated delivered is no second outcome).
    const id = randomUUID();
    for (const fields of [read, delivered, { ...delivered, timestamp: '2026-03-17T22:26:11Z' }]) {
      await postNative(t.publicApp, nativeFields({ id, ...fields })).expect(200);
    }
    expect((await getMessage(id)).body).toMatchObject({ status: 'read', conflict: false });

    // All three in one batch (a group commit, a spool replay), read first.
    const batched = randomUUID();
    const at = (second: number) => ({
      providerTimestamp: new Date(`2026-03-17T22:26:${second}Z`),
      messageId: batched,
      api: 'native' as const,
    });
    await recordEvents(t.database.db, [
      statusEvent('read', at(30)),
      statusEvent('delivered', at(10)),
      statusEvent('undelivered', { ...at(20), errorCode: '30003' }),
    ]);
    expect((await getMessage(batched)).body).toMatchObject({ status: 'read', conflict: true });
  });

  test('When delivered comes twice around an undelivered, then the latest provider timestamp wins whatever the order', async () => {
    const at = (second: number) => `2026-03-17T22:26:${String(second).padStart(2, '0')}Z`;
    const delivered01 = { status: 'delivered', timestamp: at(1) };
    const delivered09 = { status: 'delivered', timestamp: at(9) };
    const undelivered05 = { status: 'undelivered', timestamp: at(5), error_code: '30003' };
    const statuses = [];
    for (const order of [
      [delivered01, delivered09, undelivered05],
      [delivered09, delivered01, undelivered05],
    ]) {
      const id = randomUUID();
      for (const fields of order) {
        await postNative(t.publicApp, nativeFields({ id, ...fields })).expect(200);
      }
      statuses.push((await getMessage(id)).body.status);
    }
    expect(statuses).toEqual(['delivered', 'delivered']);
  });

  test('When a later callback has no error code, then the stored error code is kept', async () => {
    const sid = randomUUID();
    await postCxml(
      t.publicApp,
      cxmlFields({ MessageSid: sid, MessageStatus: 'undelivered', ErrorCode: '30005' }),
    ).expect(200);
    await postCxml(t.publicApp, cxmlFields({ MessageSid: sid, MessageStatus: 'sent' })).expect(200);
    expect((await getMessage(sid)).body).toMatchObject({
      status: 'undelivered',
      error_code: '30005',
    });
  });

  test('When the status is one we do not know, then it is stored as unknown with the raw status', async () => {
    const fields = nativeFields({ status: 'teleported' });
    await postNative(t.publicApp, fields).expect(200);
    const { body } = await getMessage(fields.id as string);
    expect(body).toMatchObject({ status: 'unknown', raw_status: 'teleported' });
  });

  test('When a callback names a message the service never sent, then the message is created from it', async () => {
    const fields = cxmlFields({ MessageStatus: 'sent' });
    await postCxml(t.publicApp, fields).expect(200);
    const { body } = await getMessage(fields.MessageSid!);
    expect(body).toMatchObject({
      sent_via_proxy: false,
      from: fields.From,
      to: fields.To,
      project_id: fields.AccountSid,
      num_segments: 1,
    });
  });
});

describe('callback authentication', () => {
  test('When a valid per-send token is in the path, then an unsigned callback is accepted', async () => {
    const { token } = mintCallbackToken([TEST_TOKEN_SECRET]);
    const fields = nativeFields();
    await request(t.publicApp).post(`/callbacks/native/${token}`).send(fields).expect(200);
    const fieldsCxml = cxmlFields();
    await request(t.publicApp)
      .post(`/callbacks/cxml/${token}`)
      .type('form')
      .send(fieldsCxml)
      .expect(200);
  });

  test('When a token-authenticated callback creates a message, then the message is bound to that send', async () => {
    const first = mintCallbackToken([TEST_TOKEN_SECRET]);
    const other = mintCallbackToken([TEST_TOKEN_SECRET]);
    const id = randomUUID();
    await request(t.publicApp)
      .post(`/callbacks/native/${first.token}`)
      .send(nativeFields({ id, status: 'sent' }))
      .expect(200);
    expect((await getMessage(id)).body.ref).toBe(first.ref);

    // The same send's token keeps working; another send's valid token cannot write here.
    await request(t.publicApp)
      .post(`/callbacks/native/${first.token}`)
      .send(nativeFields({ id, status: 'delivered' }))
      .expect(200);
    const res = await request(t.publicApp)
      .post(`/callbacks/native/${other.token}`)
      .send(nativeFields({ id, status: 'failed', error_code: '30008' }));
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('token_mismatch');
    const { body } = await getMessage(id);
    expect(body.status).toBe('delivered');
    expect(body.history).toHaveLength(2);
  });

  test('When the token is forged, then the callback is refused with 403 and nothing is stored', async () => {
    const fields = nativeFields();
    const res = await request(t.publicApp)
      .post(`/callbacks/native/${'a'.repeat(16)}.${'b'.repeat(43)}`)
      .send(fields);
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'invalid_token' });
    expect((await getMessage(fields.id as string)).status).toBe(404);
  });

  test('When a signed callback arrives on a token path, then it is signed for the URL with the token', async () => {
    const { token } = mintCallbackToken(['some-other-secret-0123456789']);
    const fields = nativeFields();
    await postNative(t.publicApp, fields, { path: `/callbacks/native/${token}` }).expect(200);
  });

  test('When the signature does not verify, then 403 invalid_signature and nothing is stored', async () => {
    const fields = cxmlFields();
    const res = await postCxml(t.publicApp, fields, { key: 'PSK_wrong' });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({
      code: 'invalid_signature',
      request_id: expect.any(String),
    });
    expect((await getMessage(fields.MessageSid!)).status).toBe(404);
  });

  test('When there is neither signature nor token, then 401', async () => {
    const res = await request(t.publicApp).post('/callbacks/cxml').type('form').send(cxmlFields());
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('unauthorized');
  });

  test('When the signature was made for another host, then it does not verify (Host is not trusted)', async () => {
    const fields = cxmlFields();
    const signature = signFormParams(
      'PSK_test_signing_key_0123456789',
      'https://evil.example.com/callbacks/cxml',
      Object.entries(fields),
    );
    await request(t.publicApp)
      .post('/callbacks/cxml')
      .set('Host', 'evil.example.com')
      .set('X-SignalWire-Signature', signature)
      .type('form')
      .send(fields)
      .expect(403);
  });

  test('When ALLOW_UNSIGNED_CALLBACKS is on, then unsigned callbacks are accepted', async () => {
    const open = await createTestApp({ ALLOW_UNSIGNED_CALLBACKS: 'true' });
    try {
      await request(open.publicApp).post('/callbacks/native').send(nativeFields()).expect(200);
    } finally {
      await open.close();
    }
  });
});

describe('STORE_BODY', () => {
  test('When STORE_BODY=true, then the raw payload keeps the body', async () => {
    const storing = await createTestApp({ STORE_BODY: 'true' });
    try {
      const fields = nativeFields({ body: 'kept' });
      await postNative(storing.publicApp, fields).expect(200);
      const row = await storing.database.db
        .selectFrom('status_events')
        .select('raw')
        .where('message_id', '=', fields.id as string)
        .executeTakeFirstOrThrow();
      expect(row.raw).toHaveProperty('body', 'kept');
    } finally {
      await storing.close();
    }
  });

  test('When STORE_BODY=true and a callback creates the message, then the message shows its text; without, it has none', async () => {
    const storing = await createTestApp({ STORE_BODY: 'true' });
    const message = (app: TestApp, id: string) =>
      request(app.internalApp).get(`/v1/messages/${id}`).auth(TEST_API_TOKEN, { type: 'bearer' });
    try {
      const cxml = cxmlFields({ MessageStatus: 'sent', Body: 'from a form' });
      await postCxml(storing.publicApp, cxml).expect(200);
      expect((await message(storing, cxml.MessageSid!)).body.body).toBe('from a form');
      // A message first seen without its text takes it from a later callback.
      const native = nativeFields({ status: 'queued', body: undefined });
      await postNative(storing.publicApp, native).expect(200);
      expect((await message(storing, native.id as string)).body).not.toHaveProperty('body');
      await postNative(storing.publicApp, { ...native, status: 'sent', body: 'from JSON' }).expect(
        200,
      );
      expect((await message(storing, native.id as string)).body.body).toBe('from JSON');

      const plain = cxmlFields({ Body: 'not kept' });
      await postCxml(t.publicApp, plain).expect(200);
      expect((await message(t, plain.MessageSid!)).body).not.toHaveProperty('body');
      // The other API's spelling is just another field: never taken for the text.
      const misspelt = cxmlFields({ body: 'not the text' });
      await postCxml(t.publicApp, misspelt).expect(200);
      expect((await message(t, misspelt.MessageSid!)).body).not.toHaveProperty('body');
      const nativeMisspelt = nativeFields({ Body: 'not the text either' });
      await postNative(t.publicApp, nativeMisspelt).expect(200);
      expect((await message(t, nativeMisspelt.id as string)).body).not.toHaveProperty('body');
    } finally {
      await storing.close();
    }
  });
});
