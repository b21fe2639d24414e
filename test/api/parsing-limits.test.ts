import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import * as bodyLimits from '../../src/http/body-limits';
import { MAX_FORM_PARAMETERS, MAX_JSON_DEPTH } from '../../src/http/body-limits';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields, postCxml } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Issue 9 item 1: one request stalled the process. 64 KiB of `a&a&a…` to /callbacks/cxml held
 * the event loop for 7.4 s and 190 KB to the send proxy for 75 s, because every repeated key
 * copied the whole array of its values (quadratic), before authentication. These tests assert
 * on the work done — how many parameters were turned into fields — and on the limits, never on
 * time: such a body is now refused after counting at most MAX_FORM_PARAMETERS + 1 parameters,
 * and only once the cheap checks (size, content type, credentials present) have passed.
 */

let t: TestApp;
let fieldsSpy: jest.SpyInstance;
beforeAll(async () => {
  t = await createTestApp({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });
});
beforeEach(() => {
  fieldsSpy = jest.spyOn(bodyLimits, 'formFields');
});
afterEach(() => {
  jest.restoreAllMocks();
});
afterAll(() => t.close());

/** Parameters turned into fields during the request (the work the stall was made of). */
function parametersParsed(): number {
  return fieldsSpy.mock.calls.reduce((sum, [pairs]) => sum + (pairs as unknown[]).length, 0);
}

/** `a&a&a…` of `bytes` bytes: 32,768 parameters named `a` in 64 KiB. */
function repeatedKeys(bytes: number): string {
  return 'a&'.repeat(Math.ceil(bytes / 2)).slice(0, bytes);
}

/** A form callback signed with scheme B, as SignalWire signs it, from ordered pairs. */
function postSignedForm(pairs: Array<[string, string]>) {
  return request(t.publicApp)
    .post('/callbacks/cxml')
    .type('form')
    .set(
      'X-SignalWire-Signature',
      signFormParams(TEST_SIGNING_KEY, `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`, pairs),
    )
    .send(new URLSearchParams(pairs).toString());
}

function expectError(res: request.Response, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.body.error).toMatchObject({ code, request_id: expect.any(String) });
}

describe('callbacks: parsing no body can make slow', () => {
  const stall = repeatedKeys(64 * 1024);

  test('When the 64 KiB `a&a&a…` body of the report comes without credentials, then 401 and nothing is parsed', async () => {
    const counted = jest.spyOn(bodyLimits, 'formParametersExceed');
    const res = await request(t.publicApp).post('/callbacks/cxml').type('form').send(stall);
    expectError(res, 401, 'unauthorized');
    expect(counted).not.toHaveBeenCalled();
    expect(parametersParsed()).toBe(0);
  });

  test('When the same body carries a signature header, then 413 too_many_parameters after counting, with no field built', async () => {
    const counted = jest.spyOn(bodyLimits, 'formParametersExceed');
    const res = await request(t.publicApp)
      .post('/callbacks/cxml')
      .type('form')
      .set('X-SignalWire-Signature', 'forged')
      .send(stall);
    expectError(res, 413, 'too_many_parameters');
    expect(counted).toHaveReturnedWith(true);
    expect(parametersParsed()).toBe(0);
  });

  test('When a signed form holds exactly the maximum of parameters, then it is parsed once, linearly, and stored', async () => {
    const fields = cxmlFields();
    const pairs: Array<[string, string]> = [...Object.entries(fields)];
    while (pairs.length < MAX_FORM_PARAMETERS) pairs.push(['Extra', String(pairs.length)]);
    const res = await postSignedForm(pairs);
    expect(res.status).toBe(200);
    expect(parametersParsed()).toBe(MAX_FORM_PARAMETERS);
    const { raw } = await t.database.db
      .selectFrom('status_events')
      .select('raw')
      .where('message_id', '=', fields.MessageSid!)
      .executeTakeFirstOrThrow();
    const extras = MAX_FORM_PARAMETERS - Object.keys(fields).length;
    expect((raw as { Extra: string[] }).Extra).toHaveLength(extras);
  });

  test('When a signed form holds one parameter more than the maximum, then 413 and nothing is stored', async () => {
    const fields = cxmlFields();
    const pairs: Array<[string, string]> = [...Object.entries(fields)];
    while (pairs.length <= MAX_FORM_PARAMETERS) pairs.push(['Extra', 'x']);
    const res = await postSignedForm(pairs);
    expectError(res, 413, 'too_many_parameters');
    expect(parametersParsed()).toBe(0);
    const stored = await t.database.db
      .selectFrom('messages')
      .select('id')
      .where('id', '=', fields.MessageSid!)
      .executeTakeFirst();
    expect(stored).toBeUndefined();
  });

  test('When a GET callback carries too many query parameters, then 413 before any field is built', async () => {
    const query = repeatedKeys(8 * 1024);
    const res = await request(t.publicApp)
      .get(`/callbacks/cxml?${query}`)
      .set('X-SignalWire-Signature', 'forged');
    expectError(res, 413, 'too_many_parameters');
    expect(parametersParsed()).toBe(0);
  });

  test('When parameter names are Object.prototype names, then they are plain fields', async () => {
    const pairs: Array<[string, string]> = [
      ...Object.entries(cxmlFields()),
      ['constructor', 'c'],
      ['__proto__', 'p'],
      ['toString', 't'],
    ];
    const res = await postSignedForm(pairs);
    expect(res.status).toBe(200);
    const sid = pairs[0]![1];
    const { raw } = await t.database.db
      .selectFrom('status_events')
      .select('raw')
      .where('message_id', '=', sid)
      .executeTakeFirstOrThrow();
    expect(raw).toMatchObject({ constructor: 'c', toString: 't' });
  });
});

describe('callbacks: JSON nesting', () => {
  function signedNative(body: string) {
    return request(t.publicApp)
      .post('/callbacks/native')
      .set('Content-Type', 'application/json')
      .set(
        'X-SignalWire-Signature',
        signJsonBody(TEST_SIGNING_KEY, `${TEST_PUBLIC_BASE_URL}/callbacks/native`, body),
      )
      .send(body);
  }

  test('When JSON nests 20,000 deep (the report: a 500), then 400 nesting_too_deep before JSON.parse', async () => {
    const body = `{"a":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
    const parse = jest.spyOn(JSON, 'parse');
    expectError(await signedNative(body), 400, 'nesting_too_deep');
    expect(parse.mock.calls.filter(([text]) => text === body)).toHaveLength(0);
  });

  test('When JSON nests exactly the maximum depth, then it is accepted; one more level is refused', async () => {
    const nested = (levels: number) =>
      JSON.stringify(
        nativeFields({ extra: JSON.parse(`${'['.repeat(levels)}${']'.repeat(levels)}`) }),
      );
    // The callback object itself is the first level.
    expect((await signedNative(nested(MAX_JSON_DEPTH - 1))).status).toBe(200);
    expectError(await signedNative(nested(MAX_JSON_DEPTH)), 400, 'nesting_too_deep');
  });

  test('When brackets are inside strings, then they do not count as nesting', async () => {
    const body = JSON.stringify(nativeFields({ body: '['.repeat(10_000), note: '{"\\"[' }));
    expect((await signedNative(body)).status).toBe(200);
  });
});

describe('callbacks: cheapest checks first', () => {
  test('When another content type comes without credentials, then 415 (content type before credentials)', async () => {
    const res = await request(t.publicApp)
      .post('/callbacks/native')
      .set('Content-Type', 'text/plain')
      .send('hello');
    expectError(res, 415, 'unsupported_media_type');
  });

  test('When an invalid token comes without a signature, then 403 before the body is parsed', async () => {
    const counted = jest.spyOn(bodyLimits, 'formParametersExceed');
    const res = await request(t.publicApp)
      .post('/callbacks/cxml/not-a-token')
      .type('form')
      .send(repeatedKeys(64 * 1024));
    expectError(res, 403, 'invalid_token');
    expect(counted).not.toHaveBeenCalled();
  });

  test('When Content-Length announces more than 64 KiB, then 413 is answered before a byte of the body is sent', async () => {
    const server = http.createServer(t.publicApp);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.write(
            'POST /callbacks/cxml HTTP/1.1\r\nHost: x\r\n' +
              'Content-Type: application/x-www-form-urlencoded\r\n' +
              'X-SignalWire-Signature: x\r\nContent-Length: 10485760\r\n\r\n',
          );
        });
        let text = '';
        socket.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          if (text.includes('\r\n\r\n') && text.includes('}')) {
            socket.destroy();
            resolve(text);
          }
        });
        socket.on('error', reject);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 413/);
      expect(answer).toMatch(/Connection: close/i);
      expect(answer).toContain('"payload_too_large"');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('send proxy: parsing no body can make slow', () => {
  const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
  const AUTH = basicAuthHeader(PROJECT, 'PTtoken');
  const PATH = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;

  test('When the 190 KB `a&a&a…` body of the report is posted, then 413 in the compatibility shape, with no field built', async () => {
    const res = await request(t.internalApp)
      .post(PATH)
      .set('Authorization', AUTH)
      .type('form')
      .send(repeatedKeys(190_000));
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({
      code: 10000,
      status: 413,
      message: expect.stringMatching(/parameters/),
    });
    expect(parametersParsed()).toBe(0);
  });

  test('When it comes without credentials, then 401 before the body is read', async () => {
    const counted = jest.spyOn(bodyLimits, 'formParametersExceed');
    const res = await request(t.internalApp).post(PATH).type('form').send(repeatedKeys(190_000));
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ code: 20003 });
    expect(counted).not.toHaveBeenCalled();
  });

  test('When a native body nests too deep, then 400 in the native shape', async () => {
    const res = await request(t.internalApp)
      .post('/api/messaging/messages')
      .set('Authorization', AUTH)
      .set('Content-Type', 'application/json')
      .send(`{"to":${'['.repeat(20_000)}${']'.repeat(20_000)}}`);
    expect(res.status).toBe(400);
    expect(res.body.errors[0]).toMatchObject({
      type: 'invalid_request_error',
      message: expect.stringMatching(/nests deeper/),
    });
  });

  test('When a native create carries 20,000 malformed custom variables, then one error says how many, not one per pair', async () => {
    // 240 KB of `"0k":"v"` pairs was answered with 20,001 error items: 4.9 MB built and
    // serialised on the event loop (~200 ms) for one request, 20 times the body it came from.
    const customVariables = Object.fromEntries(
      Array.from({ length: 20_000 }, (_, i) => [`${i}k`, 'v']),
    );
    const res = await request(t.internalApp)
      .post('/api/messaging/messages')
      .set('Authorization', AUTH)
      .set('Content-Type', 'application/json')
      .send(
        JSON.stringify({
          to: '+15551234567',
          from: '+15557654321',
          body: 'x',
          custom_variables: customVariables,
        }),
      );
    expect(res.status).toBe(422);
    const errors = (res.body as { errors: Array<{ attribute: string; message: string }> }).errors;
    expect(errors.filter((e) => e.attribute === 'custom_variables')).toEqual([
      expect.objectContaining({ message: expect.stringMatching(/at most 20 pairs \(has 20000\)/) }),
    ]);
    expect(res.text.length).toBeLessThan(4096);
  });

  test('When Content-Length announces more than 256 KiB, then 413 before the body is read', async () => {
    const res = await request(t.internalApp)
      .post('/api/messaging/messages')
      .set('Authorization', AUTH)
      .set('Content-Type', 'application/json')
      .send('x'.repeat(256 * 1024 + 1));
    expect(res.status).toBe(413);
    expect(res.body.errors[0]).toMatchObject({ type: 'invalid_request_error' });
  });

  test('When another content type is posted, then 415 before the credentials are looked at', async () => {
    const res = await request(t.internalApp)
      .post('/api/messaging/messages')
      .set('Content-Type', 'text/plain')
      .send('hello');
    expect(res.status).toBe(415);
  });
});

test('When all of the above has been tried, then a normal callback is still accepted', async () => {
  await postCxml(t.publicApp, cxmlFields()).expect(200);
});
