import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { sha256Hex, signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  TEST_TOKEN_SECRET,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * DESIGN §2 "A signature made for one scheme never authenticates a request of the other
 * kind", when the boundary between URL and body moves. Scheme A signs url + body with nothing
 * between them, so the genuine signature of an attacker's own JSON callback — whose text the
 * attacker wrote (the message's body) — is also, re-encoded as base64, a scheme B signature of
 * the URL `url + body`: a GET carrying the attacker's query, or a JSON request whose URL's
 * bodySHA256 names a body of the attacker's choosing. Either forged a status for any message.
 *
 * Sent with node:http: supertest's URL parsing would percent-encode the `{` these URLs hold,
 * and an attacker sends them as they are (Node's parser takes them).
 */

let t: TestApp;
let server: http.Server;
beforeAll(async () => {
  t = await createTestApp({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });
  server = http.createServer(t.publicApp);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await t.close();
});

function send(
  method: 'GET' | 'POST',
  target: string,
  headers: Record<string, string>,
  body = '',
): Promise<{ status: number; body: string }> {
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: target,
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function message(id: string) {
  const res = await request(t.internalApp)
    .get(`/v1/messages/${id}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  return res.body as { status: string; history: unknown[] };
}

/** The same HMAC as a scheme B signature: hex re-encoded as base64. */
const asBase64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64');

/**
 * The callback URLs such a replay can start from: the proxy's token URL (the glued segment is
 * no token's shape, so it is refused before any signature is looked at), and a URL configured
 * without a token but with a query (the `{` the body brings into the request target refuses
 * it). `sep` opens the attacker's own parameters after the URL.
 */
const configured = [
  {
    url: 'a token URL',
    path: (api: string) => `/callbacks/${api}/${mintCallbackToken([TEST_TOKEN_SECRET]).token}`,
    sep: '?',
    code: 'invalid_token',
  },
  {
    url: 'a URL without a token, with a query',
    path: (api: string) => `/callbacks/${api}?app=orders`,
    sep: '&',
    code: 'invalid_signature',
  },
];

test.each(configured)(
  'When a genuine native signature is replayed for its URL followed by its body, with a bodySHA256 the body carried ($url), then 403 and the victim is untouched',
  async ({ path: pathFor, sep, code }) => {
    const victim = nativeFields({ status: 'undelivered', error_code: '30003' });
    await postNative(t.publicApp, victim).expect(200);

    // The attacker's forged body, and its hash written into the text of the attacker's own
    // message: SignalWire's callback for that message carries it, and is genuinely signed.
    const forged = JSON.stringify({ id: victim.id, status: 'delivered' });
    const path = pathFor('native');
    const own = JSON.stringify({
      id: randomUUID(),
      status: 'sent',
      to: '+15551234567',
      from: '+15559876543',
      body: `${sep}bodySHA256=${sha256Hex(forged)}&x=`,
    });
    const genuine = signJsonBody(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, own);
    const headers = { 'content-type': 'application/json' };
    expect(
      (await send('POST', path, { ...headers, 'x-signalwire-signature': genuine }, own)).status,
    ).toBe(200);

    const res = await send(
      'POST',
      path + own,
      { ...headers, 'x-signalwire-signature': asBase64(genuine) },
      forged,
    );
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).error.code).toBe(code);
    const stored = await message(victim.id as string);
    expect(stored.status).toBe('undelivered');
    expect(stored.history).toHaveLength(1);
  },
);

test.each(configured)(
  'When a genuine JSON signature of a cXML callback is replayed as a GET to its URL followed by its body ($url), then 403 and the victim is untouched',
  async ({ path: pathFor, sep, code }) => {
    const victim = cxmlFields({ MessageStatus: 'undelivered', ErrorCode: '30003' });
    await postCxml(t.publicApp, victim).expect(200);

    const path = pathFor('cxml');
    const own = JSON.stringify({
      MessageSid: randomUUID(),
      MessageStatus: 'sent',
      Body: `${sep}MessageSid=${victim.MessageSid}&MessageStatus=delivered&x=`,
    });
    const genuine = signJsonBody(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, own);

    const res = await send('GET', path + own, { 'x-signalwire-signature': asBase64(genuine) });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).error.code).toBe(code);
    const stored = await message(victim.MessageSid!);
    expect(stored.status).toBe('undelivered');
    expect(stored.history).toHaveLength(1);
  },
);

/**
 * The form scheme has the same seam: it signs the URL and then each parameter's name and value,
 * sorted, with nothing between them. The genuine signature of SignalWire's form callback for the
 * attacker's own message (its text, `Body`, chosen by the attacker) is also one of a GET to the
 * URL followed by `AccountSid<sid>Body<text>…`: the text's `?` starts that GET's query, naming
 * any message and status. On the proxy's token URL the signed parameters are glued to the token,
 * on a URL configured with a trailing slash they are a segment of their own: neither is shaped
 * like a token, so both are refused (no URL the service hands out has such a segment).
 */
test.each([
  {
    url: 'a token URL',
    path: () => `/callbacks/cxml/${mintCallbackToken([TEST_TOKEN_SECRET]).token}`,
  },
  { url: 'a URL without a token, with a trailing slash', path: () => '/callbacks/cxml/' },
])(
  'When a genuine form signature is replayed as a GET to its URL followed by its sorted parameters ($url), then 403 invalid_token and the victim is untouched',
  async ({ path: pathFor }) => {
    const victim = cxmlFields({ MessageStatus: 'undelivered', ErrorCode: '30003' });
    await postCxml(t.publicApp, victim).expect(200);

    const path = pathFor();
    const own = cxmlFields({
      MessageStatus: 'delivered',
      Body: `?MessageSid=${victim.MessageSid}&MessageStatus=delivered&x=`,
    });
    const genuine = signFormParams(
      TEST_SIGNING_KEY,
      TEST_PUBLIC_BASE_URL + path,
      Object.entries(own),
    );
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const body = new URLSearchParams(own).toString();
    expect(
      (await send('POST', path, { ...form, 'x-signalwire-signature': genuine }, body)).status,
    ).toBe(200);

    const signed = Object.entries(own)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => name + value)
      .join('');
    // The forgery verifies as a signature: it is refused for its token segment alone.
    expect(signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path + signed, [])).toBe(
      genuine,
    );
    const res = await send('GET', path + signed, { 'x-signalwire-signature': genuine });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).error.code).toBe('invalid_token');
    const stored = await message(victim.MessageSid!);
    expect(stored.status).toBe('undelivered');
    expect(stored.history).toHaveLength(1);
  },
);

test('When SignalWire calls back with GET, its parameters percent-encoded (braces in the text included), then it still verifies', async () => {
  const fields = cxmlFields({ MessageStatus: 'sent', Body: '{"json": "in a text"}' });
  const path = `/callbacks/cxml?${new URLSearchParams(fields).toString()}`;
  const signature = signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, []);
  expect((await send('GET', path, { 'x-signalwire-signature': signature })).status).toBe(200);
  expect((await message(fields.MessageSid!)).status).toBe('sent');
});
