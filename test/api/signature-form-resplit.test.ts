import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { signFormParams } from '../../src/signalwire/signing';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Scheme B signs URL + k1v1k2v2… with no separators, so one genuine signed callback whose
 * Body a sender chose also signs every other split of the same string into sorted pairs: the
 * sender's text becomes `MessageSid=<any message>` and `MessageStatus=failed`, and the genuine
 * pairs after it become one parameter's value (src/callbacks/form-resplit.ts). The same string
 * cut elsewhere: a POST to a URL with a query replayed as a GET of the URL followed by its
 * sorted parameters, and a GET callback's URL cut inside its Body, the rest sent as a form.
 *
 * Sent with node:http where the request target must go byte for byte.
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

const message = (id: string) =>
  request(t.internalApp).get(`/v1/messages/${id}`).auth(TEST_API_TOKEN, { type: 'bearer' });

const FORM = 'application/x-www-form-urlencoded';

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
        headers:
          method === 'POST'
            ? { ...headers, 'content-length': String(Buffer.byteLength(body)) }
            : headers,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on('error', reject);
    req.end(method === 'POST' ? body : undefined);
  });
}

/** What scheme B signs after the URL: each name and value, sorted by name. */
function signedParams(fields: Record<string, string>): string {
  return Object.entries(fields)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => name + value)
    .join('');
}

/** A victim message, currently `sent`. */
async function victimMessage(): Promise<string> {
  const victim = randomUUID();
  await postCxml(t.publicApp, cxmlFields({ MessageSid: victim, MessageStatus: 'sent' })).expect(
    200,
  );
  return victim;
}

async function expectUntouched(victim: string): Promise<void> {
  const { body } = await message(victim);
  expect(body.status).toBe('sent');
  expect(body.history).toHaveLength(1);
}

function expectAmbiguous(res: { status: number; body: string }): void {
  expect(res.status).toBe(403);
  expect(JSON.parse(res.body)).toMatchObject({
    error: { code: 'ambiguous_parameters', message: expect.any(String) },
  });
}

test('When a genuine signature of one callback is replayed with its parameters re-split, then it does not write a status for another message', async () => {
  const victim = await victimMessage();

  // The attacker's own message, whose text it chose; SignalWire signs its callback.
  const own = randomUUID();
  const genuine = cxmlFields({
    MessageSid: own,
    MessageStatus: 'sent',
    Body: `hiMessageSid${victim}MessageStatusfailedZ`,
  });
  const url = `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`;
  const signature = signFormParams(TEST_SIGNING_KEY, url, Object.entries(genuine));

  // The same signature, the same URL; the same signed string split differently.
  const sorted = Object.entries(genuine).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const afterBody = sorted
    .slice(sorted.findIndex(([k]) => k === 'Body') + 1)
    .map(([k, v]) => k + v)
    .join('');
  const forged: Array<[string, string]> = [
    ['AccountSid', genuine.AccountSid!],
    ['Body', 'hi'],
    ['MessageSid', victim],
    ['MessageStatus', 'failed'],
    ['Z', afterBody],
  ];
  // Sanity: the forged pairs sign to the very same signature.
  expect(signFormParams(TEST_SIGNING_KEY, url, forged)).toBe(signature);

  const res = await request(t.publicApp)
    .post('/callbacks/cxml')
    .set('Content-Type', FORM)
    .set('X-SignalWire-Signature', signature)
    .send(new URLSearchParams(forged).toString());

  expect(res.status).toBe(403);
  expect(res.body.error.code).toBe('ambiguous_parameters');
  await expectUntouched(victim);
});

test('When a genuine callback that carries SmsSid but no MessageSid is re-split to add a MessageSid, then 403 and the victim is untouched', async () => {
  const victim = await victimMessage();
  const own = randomUUID();
  const genuine = cxmlFields({ Body: `hiMessageSid${victim}MessageStatusfailedN` });
  delete genuine.MessageSid;
  delete genuine.MessageStatus;
  genuine.SmsSid = own;
  genuine.SmsStatus = 'sent';
  const url = `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`;
  const signature = signFormParams(TEST_SIGNING_KEY, url, Object.entries(genuine));

  // Every name the genuine callback carries stays a key of its own: only the ids disagree.
  const forged: Array<[string, string]> = [
    ['AccountSid', genuine.AccountSid!],
    ['Body', 'hi'],
    ['MessageSid', victim],
    ['MessageStatus', 'failed'],
    ['N', `From${genuine.From}`],
    ['NumMedia', genuine.NumMedia!],
    ['NumSegments', genuine.NumSegments!],
    ['SmsSid', own],
    ['SmsStatus', 'sent'],
    ['To', genuine.To!],
  ];
  expect(signFormParams(TEST_SIGNING_KEY, url, forged)).toBe(signature);

  const res = await send(
    'POST',
    '/callbacks/cxml',
    { 'content-type': FORM, 'x-signalwire-signature': signature },
    new URLSearchParams(forged).toString(),
  );
  expectAmbiguous(res);
  await expectUntouched(victim);
});

test.each([
  ['the genuine fields after it in another parameter', '&x='],
  // Every genuine name after the text then lies inside a Body value: only the AccountSid signed
  // first, inside the configured query's value, gives the forgery away.
  ['the genuine fields after it inside a second Body', '&Body='],
])(
  'When a genuine form callback to a URL with a query is replayed as a GET of that URL followed by its sorted parameters (%s), then 403 and the victim is untouched',
  async (_case, ending) => {
    const victim = await victimMessage();
    const path = '/callbacks/cxml?app=orders';
    const genuine = cxmlFields({
      MessageStatus: 'sent',
      Body: `&MessageSid=${victim}&MessageStatus=failed${ending}`,
    });
    const signature = signFormParams(
      TEST_SIGNING_KEY,
      TEST_PUBLIC_BASE_URL + path,
      Object.entries(genuine),
    );
    const body = new URLSearchParams(genuine).toString();
    expect(
      (
        await send(
          'POST',
          path,
          { 'content-type': FORM, 'x-signalwire-signature': signature },
          body,
        )
      ).status,
    ).toBe(200);

    // The GET's URL is the very string signed: it verifies.
    const target = path + signedParams(genuine);
    expect(signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + target, [])).toBe(signature);
    expectAmbiguous(await send('GET', target, { 'x-signalwire-signature': signature }));
    await expectUntouched(victim);
  },
);

test('When a genuine GET callback is cut inside its Body and the rest is sent as a POST form, then 403 and the victim is untouched', async () => {
  const victim = await victimMessage();
  // SignalWire's GET carries the fields in its own order: here the ids before the text.
  const genuine = cxmlFields({
    MessageStatus: 'sent',
    Body: `xMessageSid${victim}MessageStatusfailedZ`,
  });
  const query = new URLSearchParams(genuine).toString();
  const getTarget = `/callbacks/cxml?${query}`;
  const signature = signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + getTarget, []);
  expect((await send('GET', getTarget, { 'x-signalwire-signature': signature })).status).toBe(200);

  const cut = getTarget.indexOf(`MessageSid${victim}`);
  const postTarget = getTarget.slice(0, cut);
  const rest = getTarget.slice(getTarget.indexOf('&', cut));
  const forged: Array<[string, string]> = [
    ['MessageSid', victim],
    ['MessageStatus', 'failed'],
    ['Z', rest],
  ];
  expect(signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + postTarget, forged)).toBe(
    signature,
  );
  expectAmbiguous(
    await send(
      'POST',
      postTarget,
      { 'content-type': FORM, 'x-signalwire-signature': signature },
      new URLSearchParams(forged).toString(),
    ),
  );
  await expectUntouched(victim);
});

test('When a genuine signed callback’s text holds MessageSid, MessageStatus, SmsSid and AccountSid, then it is accepted and stored, as a POST and as a GET', async () => {
  const text = (id: string) =>
    `MessageSid${id}MessageStatusfailed SmsSid ${id} SmsStatus AccountSid MessageSid=${id}&Z=`;

  const posted = cxmlFields({ MessageStatus: 'sent', Body: text(randomUUID()) });
  const res = await send(
    'POST',
    '/callbacks/cxml',
    {
      'content-type': FORM,
      'x-signalwire-signature': signFormParams(
        TEST_SIGNING_KEY,
        `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`,
        Object.entries(posted),
      ),
    },
    new URLSearchParams(posted).toString(),
  );
  expect(res.status).toBe(200);
  const stored = await message(posted.MessageSid!).expect(200);
  expect(stored.body.status).toBe('sent');
  expect(stored.body.history).toHaveLength(1);

  // With the legacy names besides (SignalWire writes the same sid in each).
  const got = cxmlFields({ MessageStatus: 'sent', Body: text(randomUUID()) });
  const withLegacy: Record<string, string> = {
    ...got,
    SmsSid: got.MessageSid!,
    SmsMessageSid: got.MessageSid!,
    SmsStatus: 'sent',
  };
  const target = `/callbacks/cxml?${new URLSearchParams(withLegacy).toString()}`;
  const signature = signFormParams(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + target, []);
  expect((await send('GET', target, { 'x-signalwire-signature': signature })).status).toBe(200);
  expect((await message(got.MessageSid!).expect(200)).body.status).toBe('sent');
});
