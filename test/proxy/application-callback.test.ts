import type { SignalwireCredential } from '../../src/config';
import { createApplicationCallbacks } from '../../src/proxy/application-callback';
import { createSignalWireClient } from '../../src/proxy/signalwire-client';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startUpstreamTap } from './support';
import type { CannedResponse, TappedRequest, UpstreamTap } from './support';

/**
 * Reading a cXML Application's status callback (proxy/application-callback.ts) from a real
 * HTTP upstream that answers as each test says.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const APP_SID = '2e7d8c3a-5b1f-4f6e-9a0b-1c2d3e4f5a6b';
const AUTH = 'Basic cHJvamVjdDp0b2tlbg==';

let answer: (req: TappedRequest) => CannedResponse;
let tap: UpstreamTap;
beforeAll(async () => {
  tap = await startUpstreamTap((req) => answer(req));
});
afterAll(async () => {
  await tap.close();
});

const json = (status: number, body: unknown): CannedResponse => ({
  status,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

function reader(
  clock: () => number = Date.now,
  credentials = new Map<string, SignalwireCredential>(),
) {
  // Far above a loopback answer: these tests are about what is kept, not about timeouts, and a
  // read timed out on a loaded machine reaches the stand-in later, counted by the next test.
  const client = createSignalWireClient({ baseUrl: tap.url, timeoutMs: 15_000 });
  return createApplicationCallbacks(client, { clock, credentials });
}

test('When the Application carries only the older sms_status_callback, then that URL is used', async () => {
  answer = () => json(200, { sid: APP_SID, sms_status_callback: 'https://app.example.com/s' });
  expect(await reader().lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
    ok: true,
    url: 'https://app.example.com/s',
  });
});

test('When an answer is kept, then it is read again only after a minute', async () => {
  let now = 1_000_000;
  let reads = 0;
  answer = () => {
    reads++;
    return json(200, { message_status_callback: `https://app.example.com/v${reads}` });
  };
  const applications = reader(() => now);
  expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toMatchObject({
    url: 'https://app.example.com/v1',
  });
  now += 59_000;
  expect(await applications.lookup(PROJECT, APP_SID.toUpperCase(), AUTH, PROJECT)).toMatchObject({
    url: 'https://app.example.com/v1',
  });
  now += 2_000;
  expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toMatchObject({
    url: 'https://app.example.com/v2',
  });
  expect(reads).toBe(2);
});

test('When a later read fails (SignalWire slow or rate limiting), then the last answer stands for a day', async () => {
  let now = 1_000_000;
  let reads = 0;
  answer = () => {
    reads++;
    return reads === 1
      ? json(200, { message_status_callback: 'https://app.example.com/v1' })
      : json(429, { code: 20429, message: 'Too Many Requests' });
  };
  const applications = reader(() => now);
  expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toMatchObject({
    url: 'https://app.example.com/v1',
  });
  now += 61_000;
  expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
    ok: true,
    url: 'https://app.example.com/v1',
  });
  expect(reads).toBe(2);
  now += 24 * 60 * 60_000;
  expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toMatchObject({ ok: false });
});

test('When the Application is gone (404), then its last answer no longer stands', async () => {
  let now = 1_000_000;
  let reads = 0;
  answer = () => {
    reads++;
    return reads === 1
      ? json(200, { message_status_callback: 'https://app.example.com/v1' })
      : reads === 2
        ? json(404, { code: 20404, message: 'not found' })
        : json(503, { message: 'unavailable' });
  };
  const applications = reader(() => now);
  await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT);
  now += 61_000;
  expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
    ok: false,
    reason: 'SignalWire answered 404',
  });
  // Nor does it come back when a later read fails otherwise.
  now += 61_000;
  expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
    ok: false,
    reason: 'SignalWire answered 503',
  });
});

test('When the caller’s token may not read Applications, then the project’s own token in SIGNALWIRE_CREDENTIALS reads it', async () => {
  const own = basicAuthHeader(PROJECT, 'PTprojectowntoken');
  answer = (req) =>
    req.headers.authorization === own
      ? json(200, { message_status_callback: 'https://app.example.com/own' })
      : json(403, { code: 20403, message: 'Forbidden' });
  const before = tap.requests.length;
  const credentials = new Map([
    [PROJECT, { projectIdAsWritten: PROJECT, token: 'PTprojectowntoken' }],
  ]);
  expect(await reader(Date.now, credentials).lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
    ok: true,
    url: 'https://app.example.com/own',
  });
  expect(tap.requests.slice(before).map((req) => req.headers.authorization)).toEqual([AUTH, own]);
  // A token SignalWire does not know at all (401) is not read for with the project's own: its
  // send is refused anyway.
  answer = (req) =>
    req.headers.authorization === own
      ? json(200, { message_status_callback: 'https://app.example.com/own' })
      : json(401, { code: 20003, message: 'Authentication Error' });
  const beforeUnknown = tap.requests.length;
  expect(await reader(Date.now, credentials).lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
    ok: false,
    reason: 'SignalWire answered 401',
  });
  expect(tap.requests.length - beforeUnknown).toBe(1);
  answer = (req) =>
    req.headers.authorization === own
      ? json(200, { message_status_callback: 'https://app.example.com/own' })
      : json(403, { code: 20403, message: 'Forbidden' });
  // Without a token of the project's own, the refusal stands.
  expect(await reader().lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
    ok: false,
    reason: 'SignalWire answered 403',
  });
});

test('When the caller or the operator writes the project in capitals, then each read names the project as its credentials write it', async () => {
  const upper = PROJECT.toUpperCase();
  const callers = basicAuthHeader(upper, 'PTcallertoken');
  const own = basicAuthHeader(upper, 'PTprojectowntoken');
  answer = (req) =>
    req.headers.authorization === own
      ? json(200, { message_status_callback: 'https://app.example.com/own' })
      : json(403, { code: 20403, message: 'Forbidden' });
  const before = tap.requests.length;
  // Kept by the lower-case id, as config.ts keeps SIGNALWIRE_CREDENTIALS.
  const credentials = new Map([
    [PROJECT, { projectIdAsWritten: upper, token: 'PTprojectowntoken' }],
  ]);
  expect(await reader(Date.now, credentials).lookup(PROJECT, APP_SID, callers, upper)).toEqual({
    ok: true,
    url: 'https://app.example.com/own',
  });
  expect(tap.requests.slice(before).map((req) => [req.path, req.headers.authorization])).toEqual([
    [`/api/laml/2010-04-01/Accounts/${upper}/Applications/${APP_SID}.json`, callers],
    [`/api/laml/2010-04-01/Accounts/${upper}/Applications/${APP_SID}.json`, own],
  ]);
});

test.each([
  [403, 'a token scoped to messaging alone'],
  [401, 'an unknown token'],
  [404, 'no such Application'],
])(
  'When SignalWire refuses the read (%s: %s), then the refusal is kept a minute for those credentials only',
  async (status) => {
    let now = 1_000_000;
    let reads = 0;
    answer = () => {
      reads++;
      return json(status, { code: 20000 + status, message: 'refused' });
    };
    const applications = reader(() => now);
    expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
      ok: false,
      reason: `SignalWire answered ${status}`,
    });
    // The next sends of that app do not wait for SignalWire to answer the same again.
    now += 59_000;
    expect(await applications.lookup(PROJECT, APP_SID.toUpperCase(), AUTH, PROJECT)).toEqual({
      ok: false,
      reason: `SignalWire answered ${status} (asked again after a minute)`,
    });
    expect(reads).toBe(1);
    // Other credentials are not answered from it.
    await applications.lookup(PROJECT, APP_SID, 'Basic b3RoZXI6Y3JlZGVudGlhbHM=', PROJECT);
    expect(reads).toBe(2);
    // A minute on, a token given the permission (or an Application created) is seen.
    now += 2_000;
    answer = () => json(200, { message_status_callback: 'https://app.example.com/now' });
    expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
      ok: true,
      url: 'https://app.example.com/now',
    });
    expect(reads).toBe(2);
  },
);

test('When a read fails for now (503), then the failure is not kept', async () => {
  let reads = 0;
  answer = () => {
    reads++;
    return json(503, { message: 'unavailable' });
  };
  const applications = reader();
  expect(await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
    ok: false,
    reason: 'SignalWire answered 503',
  });
  await applications.lookup(PROJECT, APP_SID, AUTH, PROJECT);
  expect(reads).toBe(2);
});

test.each([
  ['credentials', 'https://user:pass@app.example.com/s'],
  ['a space', 'https://app.example.com/a b'],
  ['not http', 'ftp://app.example.com/s'],
])(
  'When the Application’s URL has %s, then it is refused as a StatusCallback would be',
  async (_what, url) => {
    answer = () => json(200, { message_status_callback: url });
    expect(await reader().lookup(PROJECT, APP_SID, AUTH, PROJECT)).toMatchObject({ ok: false });
  },
);

test('When the answer is not an Application (HTML from a gateway), then the read fails', async () => {
  answer = () => ({ status: 200, headers: { 'content-type': 'text/html' }, body: '<html>' });
  expect(await reader().lookup(PROJECT, APP_SID, AUTH, PROJECT)).toEqual({
    ok: false,
    reason: 'the answer is not an Application',
  });
});
