import request from 'supertest';
import { signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * The bad-input matrix: every route answers bad input with the documented 4xx and the JSON
 * error body with a request id — never a 500 — and the next valid request still works.
 */
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

function expectError(res: request.Response, status: number, code?: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/application\/json/);
  expect(res.body.error).toEqual(
    expect.objectContaining({
      code: code ?? expect.any(String),
      message: expect.any(String),
      request_id: expect.any(String),
    }),
  );
  expect(JSON.stringify(res.body)).not.toMatch(/at .*\.ts:\d+/); // no stack traces
}

function signedNative(body: string, contentType = 'application/json') {
  return request(t.publicApp)
    .post('/callbacks/native')
    .set('Content-Type', contentType)
    .set(
      'X-SignalWire-Signature',
      signJsonBody(TEST_SIGNING_KEY, `${TEST_PUBLIC_BASE_URL}/callbacks/native`, body),
    )
    .send(body);
}

describe('callbacks: bad input', () => {
  afterEach(async () => {
    // The next valid request on each route still works.
    await postCxml(t.publicApp, cxmlFields()).expect(200);
    await postNative(t.publicApp, nativeFields()).expect(200);
  });

  test('When the JSON is malformed, then 400 malformed_body', async () => {
    expectError(await signedNative('{"id": "abc", '), 400, 'malformed_body');
  });

  test('When the JSON is not an object, then 400 malformed_body', async () => {
    expectError(await signedNative('[1,2,3]'), 400, 'malformed_body');
    expectError(await signedNative('null'), 400, 'malformed_body');
  });

  test('When a required field is missing, then 400 missing_field naming it', async () => {
    const res = await signedNative(JSON.stringify({ status: 'sent' }));
    expectError(res, 400, 'missing_field');
    expect(res.body.error.details).toEqual([{ path: 'id', message: 'Required string' }]);
    expectError(await postCxml(t.publicApp, { MessageStatus: 'sent' }), 400, 'missing_field');
  });

  test('When a field has the wrong type, then 400', async () => {
    expectError(await signedNative(JSON.stringify({ id: { $gt: '' }, status: 'sent' })), 400);
    expectError(await signedNative(JSON.stringify({ id: 'abc', status: ['sent'] })), 400);
  });

  test('When a NUL character is in an id, a status, an error code or a field name, then 400 instead of a 503 retried forever', async () => {
    // Stripped, it could make another id or status: PostgreSQL cannot store it as it is.
    for (const fields of [
      nativeFields({ status: 'deliv\u0000ered' }),
      nativeFields({ error_code: '30003\u0000' }),
      nativeFields({ timestamp: '2026-03-17T22:26:5\u00007Z' }),
      nativeFields({ custom_variables: { 'a\u0000': 'b' } }),
    ]) {
      expectError(await signedNative(JSON.stringify(fields)), 400, 'invalid_character');
    }
    for (const fields of [
      cxmlFields({ MessageStatus: 'sent\u0000' }),
      cxmlFields({ ErrorCode: '3\u00000003' }),
      { ...cxmlFields(), 'Body\u0000': 'x' },
    ]) {
      expectError(await postCxml(t.publicApp, fields), 400, 'invalid_character');
    }
  });

  test('When a NUL character is in a message text or other free text, then the callback is stored without it (200)', async () => {
    // An app may send a text or custom variable with one through the proxy, and SignalWire
    // echoes it in every callback: refused, they would all be lost.
    const native = nativeFields({
      to: '+1555\u0000',
      error_message: 'Unreachable\u0000',
      custom_variables: { order: 'x\u0000y' },
    });
    expect((await signedNative(JSON.stringify(native))).status).toBe(200);
    const cxml = cxmlFields({ Body: 'a\u0000b', ErrorMessage: 'oops\u0000' });
    expect((await postCxml(t.publicApp, cxml)).status).toBe(200);

    const stored = async (id: string) =>
      (
        await request(t.internalApp)
          .get(`/v1/messages/${id}`)
          .auth(TEST_API_TOKEN, { type: 'bearer' })
          .expect(200)
      ).body;
    const nativeMessage = await stored(native.id as string);
    expect(nativeMessage.to).toBe('+1555');
    expect(nativeMessage.history[0].error_message).toBe('Unreachable');
    const cxmlMessage = await stored(cxml.MessageSid as string);
    expect(cxmlMessage.history[0].error_message).toBe('oops');
  });

  test('When the timestamp is a date PostgreSQL cannot hold, then the callback is stored without it instead of a 503 retried forever', async () => {
    // Found by test/api/callbacks.property.test.ts: JavaScript parses years PostgreSQL refuses.
    for (const timestamp of ['-004713-11-23T23:59:59.999Z', '+275760-09-13T00:00:00.000Z']) {
      const fields = nativeFields({ timestamp });
      expect((await signedNative(JSON.stringify(fields))).status).toBe(200);
      const history = await request(t.internalApp)
        .get(`/v1/messages/${fields.id as string}`)
        .auth(TEST_API_TOKEN, { type: 'bearer' });
      expect(history.body.history[0].provider_timestamp).toBeNull();
    }
  });

  test('When the content type is not supported, then 415', async () => {
    expectError(await signedNative('<xml/>', 'application/xml'), 415, 'unsupported_media_type');
    expectError(
      await signedNative('id=abc&status=sent', 'application/x-www-form-urlencoded'),
      415,
      'unsupported_media_type',
    );
    const res = await request(t.publicApp)
      .post('/callbacks/cxml')
      .set('Content-Type', 'text/plain')
      .send('MessageSid=abc');
    expectError(res, 415, 'unsupported_media_type');
  });

  test('When there is no body and no content type, then 415', async () => {
    expectError(await request(t.publicApp).post('/callbacks/native'), 415);
  });

  test('When the body is larger than 64 KiB, then 413', async () => {
    const big = JSON.stringify(nativeFields({ padding: 'x'.repeat(70 * 1024) }));
    expectError(await signedNative(big), 413, 'payload_too_large');
    const form = new URLSearchParams(cxmlFields({ Body: 'y'.repeat(70 * 1024) })).toString();
    expectError(
      await request(t.publicApp).post('/callbacks/cxml').type('form').send(form),
      413,
      'payload_too_large',
    );
  });

  test('When the signature header is garbage, then 403', async () => {
    const res = await request(t.publicApp)
      .post('/callbacks/native')
      .set('X-SignalWire-Signature', '\u00ff'.repeat(3) + 'not-a-signature')
      .send(nativeFields());
    expectError(res, 403, 'invalid_signature');
  });

  test('When the signature is missing, then 401', async () => {
    expectError(
      await request(t.publicApp).post('/callbacks/native').send(nativeFields()),
      401,
      'unauthorized',
    );
  });

  test('When the charset is unknown, then still never a 500', async () => {
    const res = await request(t.publicApp)
      .post('/callbacks/native')
      .set('Content-Type', 'application/json; charset=klingon')
      .send('{}');
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
  });

  test('When the route or method does not exist, then a JSON 404', async () => {
    expectError(await request(t.publicApp).put('/callbacks/cxml'), 404, 'not_found');
    expectError(await request(t.publicApp).get('/callbacks/native'), 404, 'not_found');
    expectError(await request(t.publicApp).get('/v1/messages'), 404, 'not_found');
  });
});

describe('query API: bad input', () => {
  const get = (path: string) =>
    request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

  test('When there is no bearer token, then 401', async () => {
    expectError(await request(t.internalApp).get('/v1/messages'), 401, 'unauthorized');
  });

  test('When the bearer token is wrong, then 401', async () => {
    expectError(
      await request(t.internalApp).get('/v1/messages').auth('nope', { type: 'bearer' }),
      401,
      'unauthorized',
    );
    expectError(await request(t.internalApp).get('/v1/messages').auth('user', 'pass'), 401);
  });

  test.each([
    ['status=teleported'],
    ['api=soap'],
    ['limit=0'],
    ['limit=501'],
    ['limit=ten'],
    ['since=yesterday'],
    ['until=2026-13-45T00:00:00Z'],
    ['stauts=sent'],
    // A list filter may be repeated (test/api/query-repeated-parameters.test.ts); limit may not.
    ['limit=10&limit=20'],
    ['to=' + '1'.repeat(100)],
  ])('When the filter is %s, then 400 invalid_request', async (query) => {
    expectError(await get(`/v1/messages?${query}`), 400, 'invalid_request');
  });

  test.each([
    ['garbage!!'],
    [Buffer.from('not json').toString('base64url')],
    [Buffer.from(JSON.stringify({ a: 1 })).toString('base64url')],
    [Buffer.from(JSON.stringify(['not-a-date', 'x'])).toString('base64url')],
    [Buffer.from(JSON.stringify(['2026-01-01T00:00:00.000Z', 42])).toString('base64url')],
    ['x'.repeat(300)],
  ])('When the cursor is forged (%s), then 400 invalid_cursor', async (cursor) => {
    expectError(await get(`/v1/messages?cursor=${encodeURIComponent(cursor)}`), 400);
  });

  test('When the message id is one no message can have, or unknown, then 404 (DESIGN §6)', async () => {
    expectError(await get(`/v1/messages/${'x'.repeat(100)}`), 404, 'not_found');
    expectError(await get('/v1/messages/a%00b'), 404, 'not_found');
    expectError(await get('/v1/messages/00000000-0000-0000-0000-000000000000'), 404, 'not_found');
  });

  test.each(['%', '%FF', '%ED%A0%80', 'abc%zz'])(
    'When the message id in the path does not percent-decode (%s), then 400 as the OpenAPI document declares',
    async (id) => {
      const declared = Object.keys(
        (await request(t.internalApp).get('/openapi.json')).body.paths['/v1/messages/{id}'].get
          .responses,
      );
      const res = await get(`/v1/messages/${id}`);
      expectError(res, 400);
      expect(declared).toContain('400');
    },
  );

  test('When the query API is asked on the public listener, then it is not there', async () => {
    expectError(
      await request(t.publicApp).get('/v1/messages').auth(TEST_API_TOKEN, { type: 'bearer' }),
      404,
    );
  });

  test('When bad input has been answered, then the next valid query still works', async () => {
    await get('/v1/messages?limit=5').expect(200);
  });
});
