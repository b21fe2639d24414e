import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { verifyCallbackToken } from '../../src/callbacks/callback-token';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { createTestApp, TEST_API_TOKEN, TEST_TOKEN_SECRET } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import {
  closedPort,
  compatMessageResource,
  listen,
  rawRequest,
  sdkClient,
  startTappedProxy,
  startUpstreamTap,
} from './support';
import type { CannedResponse, Listening, TappedProxy, TappedRequest, UpstreamTap } from './support';

/**
 * DESIGN §5: an app points its space URL at the proxy "and changes nothing else". Its SDK
 * client is one object for every call — it also fetches, lists, updates and deletes — so
 * every other call under the SignalWire API prefixes goes to SignalWire as it came and comes
 * back as SignalWire answered, under the proxy's own rules (credentials, project allow-list,
 * body limit, 502/504), and no create ever reaches SignalWire without the service's callback.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTpassthroughtesttoken';
const AUTH = basicAuthHeader(PROJECT, TOKEN);
const COMPAT = `/2010-04-01/Accounts/${PROJECT}`;
const LAML = `/api/laml/2010-04-01/Accounts/${PROJECT}`;

/**
 * SignalWire's answer to a read of the request's path, as the OpenAPI document describes it
 * (every answer a test gets is checked against it): a page of messages, a message, a log.
 */
function readAnswer(req: TappedRequest): CannedResponse {
  const path = req.path.split('?')[0]!;
  const last = path.split('/').at(-1)!;
  const body = path.startsWith('/api/messaging/logs/')
    ? { id: last, status: 'delivered', error_code: null, error_message: null }
    : /\/Messages(\.json)?$/.test(path)
      ? { messages: [], next_page_uri: null }
      : compatMessageResource(PROJECT, last.replace(/\.json$/, ''), 'x');
  return {
    status: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  };
}

describe('the official SDK, with the proxy as its space URL for everything', () => {
  let sim: RunningSimulator;
  let stack: TappedProxy;
  let tap: UpstreamTap;
  let t: TestApp;
  let proxy: Listening;

  beforeAll(async () => {
    sim = await startSimulator({
      stepDelayMs: 3_600_000,
      credentials: { projectId: PROJECT, token: TOKEN },
    });
    stack = await startTappedProxy({ forwardTo: sim.url });
    ({ tap, t, proxy } = stack);
  });

  afterAll(async () => {
    await stack.close();
    await sim.close();
  });

  it('When the app fetches the message it just sent through the same client, then it gets SignalWire’s message resource and nothing more is recorded', async () => {
    const client = sdkClient(proxy.url, PROJECT, TOKEN);
    const sent = await client.messages.create({
      from: '+15551234567',
      to: '+15557650000',
      body: 'x',
    });

    const fetched = await client.messages(sent.sid).fetch();

    expect(fetched).toMatchObject({
      sid: sent.sid,
      accountSid: PROJECT,
      to: '+15557650000',
      status: 'queued',
    });
    const lookup = tap.requests.at(-1)!;
    expect(lookup).toMatchObject({
      method: 'GET',
      path: `${COMPAT}/Messages/${sent.sid}.json`,
    });
    expect(lookup.headers['authorization']).toBe(AUTH);
    const stored = await request(t.internalApp)
      .get(`/v1/messages/${sent.sid}`)
      .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
    expect(stored.body.history).toHaveLength(1);
  });

  it('When the app fetches a message SignalWire does not know, then the SDK gets SignalWire’s own 404, not the service’s', async () => {
    const client = sdkClient(proxy.url, PROJECT, TOKEN);
    await expect(client.messages(randomUUID()).fetch()).rejects.toMatchObject({
      status: 404,
      code: 20404,
    });
  });

  it('When a native app reads the log of the message it just sent, then it gets SignalWire’s log entry', async () => {
    const sent = await request(t.internalApp)
      .post('/api/messaging/messages')
      .set('Authorization', AUTH)
      .send({ to: '+15557650000', from: '+15551234567', body: 'x' });
    expect(sent.status).toBe(201);
    const id = (sent.body as { id: string }).id;

    const log = await request(t.internalApp)
      .get(`/api/messaging/logs/${id}`)
      .set('Authorization', AUTH);

    expect(log.status).toBe(200);
    expect(log.body).toMatchObject({ id, status: 'queued' });
    expect(Buffer.from(log.text)).toEqual(tap.requests.at(-1)!.response!.body);
  });
});

describe('calls passed through as they came', () => {
  let answer: (req: TappedRequest) => CannedResponse;
  let tap: UpstreamTap;
  let t: TestApp;

  beforeAll(async () => {
    tap = await startUpstreamTap((req) => answer(req));
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url });
  });

  afterAll(async () => {
    await t.close();
    await tap.close();
  });

  it('When a list is requested, then SignalWire gets the same method, path and query, the caller’s credentials and none of its other headers, and the answer comes back byte for byte', async () => {
    const body = '{ "messages" : [ ],\n  "next_page_uri": null }';
    answer = () => ({
      status: 200,
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body,
    });
    const query = '?To=%2B15557650000&DateSent%3E=2026-01-01&PageSize=2&Status=delivered';

    const res = await request(t.internalApp)
      .get(`${LAML}/Messages.json${query}`)
      .set('Authorization', AUTH)
      .set('Accept', 'application/json')
      .set('Accept-Charset', 'utf-8')
      .set('User-Agent', 'twilio-node/3.2.0')
      .set('Cookie', 'session=internal-dashboard')
      .set('X-Forwarded-For', '10.1.2.3')
      .set('X-Internal-Trace', 'abc');

    const forwarded = tap.requests.at(-1)!;
    expect(forwarded.method).toBe('GET');
    expect(forwarded.path).toBe(`${LAML}/Messages.json${query}`);
    expect(forwarded.headers).toMatchObject({
      authorization: AUTH,
      accept: 'application/json',
      'accept-charset': 'utf-8',
      'user-agent': 'twilio-node/3.2.0',
      host: `127.0.0.1:${tap.port}`,
    });
    expect(forwarded.headers).not.toHaveProperty('cookie');
    expect(forwarded.headers).not.toHaveProperty('x-forwarded-for');
    expect(forwarded.headers).not.toHaveProperty('x-internal-trace');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.text).toBe(body);
  });

  it('When a message is updated (POST to its resource), then the body bytes and Content-Type go out unchanged and SignalWire’s status comes back', async () => {
    const sid = randomUUID();
    answer = () => ({
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(compatMessageResource(PROJECT, sid, '')),
    });
    const form = 'Body=&Status=canceled&Note=%E2%9C%93+x';

    const res = await request(t.internalApp)
      .post(`${LAML}/Messages/${sid}.json`)
      .set('Authorization', AUTH)
      .set('Content-Type', 'application/x-www-form-urlencoded; charset=utf-8')
      .send(form);

    expect(res.status).toBe(200);
    const forwarded = tap.requests.at(-1)!;
    expect(forwarded).toMatchObject({
      method: 'POST',
      path: `${LAML}/Messages/${sid}.json`,
      body: form,
    });
    expect(forwarded.headers['content-type']).toBe(
      'application/x-www-form-urlencoded; charset=utf-8',
    );
  });

  it('When a message is deleted, then SignalWire’s 204 comes back', async () => {
    answer = () => ({ status: 204, body: '' });
    const sid = randomUUID();
    const res = await request(t.internalApp)
      .delete(`${COMPAT}/Messages/${sid}.json`)
      .set('Authorization', AUTH);
    expect(res.status).toBe(204);
    expect(tap.requests.at(-1)).toMatchObject({
      method: 'DELETE',
      path: `${COMPAT}/Messages/${sid}.json`,
    });
  });

  it('When SignalWire answers 429 with Retry-After, then both come back', async () => {
    answer = () => ({
      status: 429,
      headers: { 'content-type': 'application/json', 'retry-after': '7' },
      body: '{"code":20429,"message":"Too Many Requests","more_info":"x","status":429}',
    });
    const res = await request(t.internalApp)
      .get('/api/messaging/logs?page_size=1000')
      .set('Authorization', AUTH);
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('7');
    expect(res.body).toMatchObject({ code: 20429 });
  });

  it('When SignalWire’s answer is larger than any create answer (a long list), then it still comes back whole', async () => {
    const message = JSON.stringify(compatMessageResource(PROJECT, randomUUID(), 'a'.repeat(1600)));
    const big = Buffer.from(`{"messages":[${Array(1600).fill(message).join(',')}]}`);
    expect(big.length).toBeGreaterThan(3 * 1024 * 1024);
    answer = () => ({ status: 200, headers: { 'content-type': 'application/json' }, body: big });
    const res = await request(t.internalApp)
      .get(`${COMPAT}/Messages.json?PageSize=1000`)
      .set('Authorization', AUTH)
      .buffer(true)
      .parse((stream, done) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => done(null, Buffer.concat(chunks)));
      });
    expect(res.status).toBe(200);
    expect((res.body as Buffer).equals(big)).toBe(true);
  });

  it('When a call comes in absolute form, then SignalWire gets the path and query only', async () => {
    answer = () => ({ status: 200, headers: { 'content-type': 'application/json' }, body: '{}' });
    const proxy = await listen(t.internalApp);
    try {
      const res = await rawRequest(proxy.port, {
        method: 'GET',
        path: `http://sw-status.internal/api/messaging/logs/abc?x=1`,
        headers: { authorization: AUTH },
      });
      expect(res.status).toBe(200);
      expect(tap.requests.at(-1)!.path).toBe('/api/messaging/logs/abc?x=1');
    } finally {
      await proxy.close();
    }
  });
});

describe('the proxy’s own rules apply to calls passed through', () => {
  let tap: UpstreamTap;
  let t: TestApp;
  let limited: TestApp;

  beforeAll(async () => {
    tap = await startUpstreamTap(() => ({ status: 200, body: '{}' }));
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url });
    limited = await createTestApp({
      SIGNALWIRE_SPACE_URL: tap.url,
      SIGNALWIRE_PROJECT_IDS: '11111111-2222-4333-8444-555555555555',
    });
  });

  afterAll(async () => {
    await limited.close();
    await t.close();
    await tap.close();
  });

  it('When a compatibility call has no credentials, then the answer is 401 code 20003 with a Basic challenge and nothing is forwarded', async () => {
    const before = tap.requests.length;
    const res = await request(t.internalApp).get(`${COMPAT}/Messages.json`);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Basic/);
    expect(res.body).toMatchObject({ code: 20003, status: 401 });
    expect(tap.requests).toHaveLength(before);
  });

  it('When a native call has no credentials, then the answer is 401 in the native errors shape and nothing is forwarded', async () => {
    const before = tap.requests.length;
    const res = await request(t.internalApp).get('/api/messaging/logs/abc');
    expect(res.status).toBe(401);
    expect(res.body).toEqual({
      errors: [expect.objectContaining({ type: 'authentication_error', code: 'unauthorized' })],
    });
    expect(tap.requests).toHaveLength(before);
  });

  it.each([
    { path: `${COMPAT}/Messages.json`, body: { code: 20006, status: 403 } },
    {
      path: '/api/messaging/logs/abc',
      body: { errors: [expect.objectContaining({ code: 'forbidden' })] },
    },
  ])(
    'When the project is not in SIGNALWIRE_PROJECT_IDS, then $path is refused 403 in its API’s shape and nothing is forwarded',
    async ({ path, body }) => {
      const before = tap.requests.length;
      const res = await request(limited.internalApp).get(path).set('Authorization', AUTH);
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject(body);
      expect(tap.requests).toHaveLength(before);
    },
  );

  it('When the declared body is larger than 256 KiB, then the answer is 413 and nothing is forwarded', async () => {
    const before = tap.requests.length;
    const res = await request(t.internalApp)
      .post(`${COMPAT}/Messages/${randomUUID()}.json`)
      .set('Authorization', AUTH)
      .type('form')
      .send(`Body=${'a'.repeat(300 * 1024)}`);
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({ code: 10000, status: 413 });
    expect(tap.requests).toHaveLength(before);
  });

  it('When a body without a declared length grows past 256 KiB, then the answer is 413 in the native shape and nothing is forwarded', async () => {
    const proxy = await listen(t.internalApp);
    const before = tap.requests.length;
    try {
      const res = await rawRequest(proxy.port, {
        method: 'PUT',
        path: '/api/messaging/logs/abc',
        headers: { authorization: AUTH, 'transfer-encoding': 'chunked' },
        body: 'a'.repeat(300 * 1024),
      });
      expect(res.status).toBe(413);
      expect(JSON.parse(res.body.toString('utf8'))).toEqual({
        errors: [expect.objectContaining({ code: 'invalid_parameter' })],
      });
      expect(tap.requests).toHaveLength(before);
    } finally {
      await proxy.close();
    }
  });
});

describe('SignalWire gives no answer to a call passed through', () => {
  it('When SignalWire does not answer within SIGNALWIRE_TIMEOUT_MS, then the caller gets 504 code 20503', async () => {
    const hanging = await startUpstreamTap('hang');
    const t = await createTestApp({
      SIGNALWIRE_SPACE_URL: hanging.url,
      SIGNALWIRE_TIMEOUT_MS: '200',
    });
    try {
      const res = await request(t.internalApp)
        .get(`${COMPAT}/Messages.json`)
        .set('Authorization', AUTH);
      expect(res.status).toBe(504);
      expect(res.body).toMatchObject({
        code: 20503,
        status: 504,
        message: expect.stringMatching(/did not answer in time/),
      });
    } finally {
      await t.close();
      await hanging.close();
    }
  });

  it('When SignalWire cannot be reached, then the native caller gets 502 upstream_unreachable saying it was not sent', async () => {
    const t = await createTestApp({
      SIGNALWIRE_SPACE_URL: `http://127.0.0.1:${await closedPort()}`,
    });
    try {
      const res = await request(t.internalApp)
        .get('/api/messaging/logs/abc')
        .set('Authorization', AUTH);
      expect(res.status).toBe(502);
      expect(res.body).toEqual({
        errors: [
          expect.objectContaining({
            code: 'upstream_unreachable',
            message: expect.stringMatching(/was not sent/),
          }),
        ],
      });
    } finally {
      await t.close();
    }
  });

  it('When the connection drops after the request went out, then the caller gets 502 saying the outcome is unknown', async () => {
    const dropping = await startUpstreamTap('drop');
    const t = await createTestApp({ SIGNALWIRE_SPACE_URL: dropping.url });
    try {
      const res = await request(t.internalApp)
        .delete(`${COMPAT}/Messages/${randomUUID()}.json`)
        .set('Authorization', AUTH);
      expect(dropping.requests).toHaveLength(1);
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({ code: 20503, message: expect.stringMatching(/unknown/) });
    } finally {
      await t.close();
      await dropping.close();
    }
  });
});

describe('no create reaches SignalWire without the service’s callback', () => {
  let stack: TappedProxy;
  let tap: UpstreamTap;
  let proxy: Listening;

  beforeAll(async () => {
    stack = await startTappedProxy((req) =>
      req.method === 'POST'
        ? {
            status: 201,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ sid: randomUUID(), id: randomUUID(), status: 'queued' }),
          }
        : readAnswer(req),
    );
    ({ tap, proxy } = stack);
  });

  afterAll(async () => {
    await stack.close();
  });

  const form = 'To=%2B15557650000&From=%2B15551234567&Body=x';
  const json = JSON.stringify({ to: '+15557650000', from: '+15551234567', body: 'x' });

  /** The token URL the proxy put in a forwarded create, checked against the secret. */
  function injectedCallback(forwarded: TappedRequest): string | null {
    const url = forwarded.headers['content-type']?.startsWith('application/json')
      ? (JSON.parse(forwarded.body) as Record<string, string>)['status_callback']
      : new URLSearchParams(forwarded.body).get('StatusCallback');
    const token = /\/callbacks\/(?:cxml|native)\/([^/]+)$/.exec(url ?? '')?.[1];
    return token && verifyCallbackToken([TEST_TOKEN_SECRET], token) ? url! : null;
  }

  it.each([
    { path: `${LAML}/Messages/`, body: form },
    { path: `${LAML}/messages.json`, body: form },
    { path: `/2010-04-01/accounts/${PROJECT}/MESSAGES.JSON`, body: form },
    { path: `${COMPAT}/Messages.json/`, body: form },
    { path: '/api/messaging/messages/', body: json },
    { path: '/API/Messaging/Messages', body: json },
  ])(
    'When a create is spelled $path, then it goes through the create route: the callback is injected',
    async ({ path, body }) => {
      const res = await rawRequest(proxy.port, {
        method: 'POST',
        path,
        headers: {
          authorization: AUTH,
          'content-type': body === json ? 'application/json' : 'application/x-www-form-urlencoded',
        },
        body,
      });
      expect(res.status).toBe(201);
      const forwarded = tap.requests.at(-1)!;
      expect(forwarded.path).toBe(path);
      expect(injectedCallback(forwarded)).not.toBeNull();
    },
  );

  it.each([
    { method: 'POST', path: `${LAML}/Messages.xml` },
    { method: 'POST', path: `${LAML}//Messages` },
    { method: 'POST', path: `${LAML}/Messages;v=1` },
    { method: 'POST', path: `${LAML}/%4Dessages.json` },
    { method: 'POST', path: `${LAML}/Messages%2Ejson` },
    { method: 'POST', path: `${LAML}/Messages%252Ejson` },
    { method: 'POST', path: `${LAML}/Other/../Messages` },
    { method: 'POST', path: `${LAML}/Messages/.` },
    { method: 'POST', path: `${LAML}/SMS/Messages` },
    { method: 'PUT', path: `${LAML}/Messages.json` },
    { method: 'PATCH', path: `${COMPAT}/Messages` },
    { method: 'POST', path: '/api/messaging/messages.json' },
    { method: 'POST', path: '/api/messaging//messages' },
    { method: 'POST', path: '/api/messaging/messages%2F' },
    { method: 'POST', path: '/api/messaging/x%2F..%2Fmessages' },
    { method: 'POST', path: '/api/messaging/%E0%A4%A' },
  ])(
    'When $method $path could create a message upstream, then it is refused 404 in its API’s shape and nothing is forwarded',
    async ({ method, path }) => {
      const before = tap.requests.length;
      const native = path.startsWith('/api/messaging');
      const res = await rawRequest(proxy.port, {
        method,
        path,
        headers: {
          authorization: AUTH,
          'content-type': native ? 'application/json' : 'application/x-www-form-urlencoded',
        },
        body: native ? json : form,
      });
      expect(res.status).toBe(404);
      const answer = JSON.parse(res.body.toString('utf8')) as unknown;
      expect(answer).toMatchObject(
        native
          ? { errors: [expect.objectContaining({ code: 'not_found' })] }
          : { code: 20404, status: 404 },
      );
      expect(tap.requests).toHaveLength(before);
    },
  );

  it.each([`${LAML}/Messages.xml`, '/api/messaging/messages', `${LAML}/Messages`])(
    'When GET %s is called, then it is passed through (a read never creates)',
    async (path) => {
      const res = await rawRequest(proxy.port, {
        method: 'GET',
        path,
        headers: { authorization: AUTH },
      });
      expect(res.status).toBe(200);
      expect(tap.requests.at(-1)).toMatchObject({ method: 'GET', path });
    },
  );
});

describe('no call leaves the API prefix it came in under', () => {
  let stack: TappedProxy;
  let tap: UpstreamTap;
  let proxy: Listening;

  beforeAll(async () => {
    stack = await startTappedProxy(readAnswer);
    ({ tap, proxy } = stack);
  });

  afterAll(async () => {
    await stack.close();
  });

  // SignalWire (or a gateway in front of it: a space URL with a path) resolves dot segments,
  // often after decoding escapes: each of these names a path outside the prefix there.
  it.each([
    { method: 'GET', path: '/api/messaging/../../admin' },
    { method: 'GET', path: '/api/messaging/logs/%2e%2e/%2E%2E/%2e%2e/admin' },
    { method: 'GET', path: '/api/messaging/..%2F..%2Fadmin' },
    { method: 'GET', path: '/api/messaging/logs/%252e%252e%252f%252e%252e%252fadmin' },
    { method: 'GET', path: '/api/messaging/a\\..\\..\\admin' },
    { method: 'GET', path: '/api/messaging/logs/..;/..;/admin' },
    { method: 'DELETE', path: `${COMPAT}/../../../admin/projects/x?y=1` },
    { method: 'POST', path: `${LAML}/Messages/./../../../../../video/rooms` },
  ])(
    'When $method $path is called, then it is refused 404 in its API’s shape and nothing is forwarded',
    async ({ method, path }) => {
      const before = tap.requests.length;
      const body = method === 'GET' ? '' : '{}';
      const res = await rawRequest(proxy.port, {
        method,
        path,
        headers: {
          authorization: AUTH,
          'content-type': 'application/json',
          'content-length': String(body.length),
        },
        body,
      });
      expect(res.status).toBe(404);
      const answer = JSON.parse(res.body.toString('utf8')) as unknown;
      expect(answer).toMatchObject(
        path.startsWith('/api/messaging')
          ? { errors: [expect.objectContaining({ code: 'not_found' })] }
          : { code: 20404, status: 404 },
      );
      expect(tap.requests).toHaveLength(before);
    },
  );

  it('When a create names an account that decodes to a dot segment, then it is refused 404 and nothing is forwarded', async () => {
    const before = tap.requests.length;
    const res = await rawRequest(proxy.port, {
      method: 'POST',
      path: '/api/laml/2010-04-01/Accounts/%2e%2e/Messages.json',
      headers: {
        authorization: basicAuthHeader('..', TOKEN),
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'To=%2B15557650000&From=%2B15551234567&Body=x',
    });
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body.toString('utf8'))).toMatchObject({ code: 20404, status: 404 });
    expect(tap.requests).toHaveLength(before);
  });

  it.each([
    `${LAML}/Messages.json?To=%2B15557650000&DateSent%3E=2026-01-01&x=..%2F..%2F`,
    '/api/messaging/logs/a1b2c3d4-e5f6-7890-abcd-ef1234567890',
    `${LAML}/Messages/Page.json..`,
  ])('When GET %s is called, then it still goes through unchanged', async (path) => {
    const res = await rawRequest(proxy.port, {
      method: 'GET',
      path,
      headers: { authorization: AUTH },
    });
    expect(res.status).toBe(200);
    expect(tap.requests.at(-1)).toMatchObject({ method: 'GET', path });
  });
});
