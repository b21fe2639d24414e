import { gzipSync } from 'node:zlib';
import type { Express } from 'express';
import request from 'supertest';
import { createInternalApp } from '../../src/app';
import { createLogger } from '../../src/logger';
import type { EventRecorder } from '../../src/messages/event-recorder';
import type { Api } from '../../src/messages/statuses';
import type { UpstreamStatus } from '../../src/proxy/signalwire-client';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { closedPort, curlDataUrlencode, startUpstreamTap } from './support';
import type { CannedResponse, TappedRequest, UpstreamTap } from './support';

/**
 * What SignalWire answers (or fails to) reaches the caller unchanged; what the proxy cannot
 * get from it is answered 502/504 in the API's own shape; and a send SignalWire accepted is
 * never turned into an error by the proxy's own bookkeeping.
 */

const PROJECT = 'c3d4e5f6-a7b8-4901-8def-234567890abc';
const TOKEN = 'PTupstreamtesttoken';
const AUTH = basicAuthHeader(PROJECT, TOKEN);
const COMPAT_PATH = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;
const NATIVE_PATH = '/api/messaging/messages';
const COMPAT_FORM = curlDataUrlencode([
  ['To', '+15557650000'],
  ['From', '+15551234567'],
  ['Body', 'x'],
]);
const NATIVE_JSON = JSON.stringify({ to: '+15557650000', from: '+15551234567', body: 'x' });

function postCompat(app: Express, auth = AUTH) {
  return request(app)
    .post(COMPAT_PATH)
    .set('Authorization', auth)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send(COMPAT_FORM);
}

function postNative(app: Express, auth = AUTH) {
  return request(app)
    .post(NATIVE_PATH)
    .set('Authorization', auth)
    .set('Content-Type', 'application/json')
    .send(NATIVE_JSON);
}

describe('upstream errors pass through verbatim', () => {
  let sim: RunningSimulator;
  let tap: UpstreamTap;
  let t: TestApp;

  beforeAll(async () => {
    sim = await startSimulator({
      stepDelayMs: 3_600_000,
      credentials: { projectId: PROJECT, token: TOKEN },
    });
    tap = await startUpstreamTap({ forwardTo: sim.url });
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url });
  });

  afterAll(async () => {
    await t.close();
    await tap.close();
    await sim.close();
  });

  it.each([
    { api: 'compatibility', post: postCompat },
    { api: 'native', post: postNative },
  ])(
    'When SignalWire refuses the $api credentials, then its 401 comes back byte for byte and nothing is recorded',
    async ({ post }) => {
      const res = await post(t.internalApp, basicAuthHeader(PROJECT, 'wrong-token'));
      const upstream = tap.requests.at(-1)!.response!;
      expect(res.status).toBe(401);
      expect(upstream.status).toBe(401);
      expect(res.headers['content-type']).toBe(upstream.contentType);
      expect(Buffer.from(res.text)).toEqual(upstream.body);
      const count = await t.database.db
        .selectFrom('messages')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .executeTakeFirstOrThrow();
      expect(Number(count.n)).toBe(0);
    },
  );
});

describe('canned upstream answers', () => {
  let next: CannedResponse | ((req: TappedRequest) => CannedResponse);
  let tap: UpstreamTap;
  let t: TestApp;

  beforeAll(async () => {
    tap = await startUpstreamTap((req) => (typeof next === 'function' ? next(req) : next));
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url });
  });

  afterAll(async () => {
    await t.close();
    await tap.close();
  });

  it.each<{ name: string; answer: CannedResponse }>([
    {
      name: 'a 500 HTML page',
      answer: {
        status: 500,
        headers: { 'content-type': 'text/html' },
        body: '<html><body>oops</body></html>',
      },
    },
    {
      name: 'a 400 JSON error in its own formatting',
      answer: {
        status: 400,
        headers: { 'content-type': 'application/json; charset=utf-8' },
        body: '{ "code" : 21211 ,\n  "message": "Invalid To", "more_info": "x", "status": 400 }',
      },
    },
    {
      name: 'a 503 with no body',
      answer: { status: 503, body: '' },
    },
  ])(
    'When SignalWire answers $name, then the caller gets the same status, type and bytes',
    async ({ answer }) => {
      next = answer;
      const res = await postCompat(t.internalApp);
      expect(res.status).toBe(answer.status);
      expect(res.headers['content-type']).toBe(answer.headers?.['content-type']);
      expect(Buffer.from(res.text ?? '')).toEqual(Buffer.from(answer.body));
    },
  );

  it('When SignalWire accepts but its answer is not JSON, then the answer still comes back and the send is counted as unrecorded', async () => {
    next = { status: 201, headers: { 'content-type': 'text/plain' }, body: 'created' };
    const unrecorded: Api[] = [];
    const app = createInternalApp({
      ...t.deps,
      proxyHooks: { onUnrecorded: (api) => unrecorded.push(api) },
    });
    const res = await postNative(app);
    expect(res.status).toBe(201);
    expect(res.text).toBe('created');
    expect(unrecorded).toEqual(['native']);
  });

  it('When SignalWire gzips its answer anyway, then the caller gets it decoded, with its own callback URL in place of the token URL, and the send is recorded', async () => {
    const id = '6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f';
    next = (req) => {
      const sent = JSON.parse(req.body) as { status_callback: string };
      return {
        status: 201,
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: gzipSync(
          JSON.stringify({ id, status: 'queued', status_callback_url: sent.status_callback }),
        ),
      };
    };
    const res = await request(t.internalApp)
      .post(NATIVE_PATH)
      .set('Authorization', AUTH)
      .send({ to: '+15557650000', from: '+15551234567', body: 'x' });
    expect(tap.requests.at(-1)!.headers['accept-encoding']).toBe('identity');
    expect(res.status).toBe(201);
    expect(res.headers['content-encoding']).toBeUndefined();
    expect(res.body).toEqual({ id, status: 'queued', status_callback_url: null });
    const stored = await request(t.internalApp)
      .get(`/v1/messages/${id}`)
      .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
    expect(stored.status).toBe(200);
  });
});

describe('recording fails after SignalWire accepted', () => {
  let sim: RunningSimulator;
  let t: TestApp;

  beforeAll(async () => {
    sim = await startSimulator({ stepDelayMs: 3_600_000 });
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: sim.url });
  });

  afterAll(async () => {
    await t.close();
    await sim.close();
  });

  it.each([
    { api: 'cxml' as const, post: postCompat },
    { api: 'native' as const, post: postNative },
  ])(
    'When the store refuses the $api send’s first event, then the caller still gets SignalWire’s 201 and the failure is logged and counted',
    async ({ api, post }) => {
      const lines: string[] = [];
      const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
      const failing: EventRecorder = {
        record: () => Promise.reject(new Error('database is down')),
        drain: () => Promise.resolve(),
      };
      const unrecorded: Api[] = [];
      const app = createInternalApp({
        ...t.deps,
        logger,
        recorder: failing,
        proxyHooks: { onUnrecorded: (a) => unrecorded.push(a) },
      });

      const res = await post(app);
      expect(res.status).toBe(201);
      const id = (res.body as { sid?: string; id?: string })[api === 'cxml' ? 'sid' : 'id'];
      expect(sim.messages.some((m) => m.id === id)).toBe(true);
      expect(unrecorded).toEqual([api]);
      const errors = lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l['level'] === 50);
      expect(errors).toEqual([
        expect.objectContaining({
          api,
          message_id: id,
          msg: expect.stringMatching(/not recorded/),
        }),
      ]);
      const metrics = await request(app).get('/metrics');
      expect(metrics.text).toContain(`sw_status_proxy_unrecorded_sends_total{api="${api}"} 1`);
    },
  );
});

describe('SignalWire does not answer', () => {
  let hanging: UpstreamTap;
  let slow: TestApp;
  let down: TestApp;
  const upstream: Array<[Api, UpstreamStatus]> = [];

  beforeAll(async () => {
    hanging = await startUpstreamTap('hang');
    slow = await createTestApp({ SIGNALWIRE_SPACE_URL: hanging.url, SIGNALWIRE_TIMEOUT_MS: '200' });
    down = await createTestApp({ SIGNALWIRE_SPACE_URL: `http://127.0.0.1:${await closedPort()}` });
  });

  afterAll(async () => {
    await slow.close();
    await down.close();
    await hanging.close();
  });

  it('When SignalWire does not answer within SIGNALWIRE_TIMEOUT_MS, then the compatibility caller gets 504 code 20503', async () => {
    const started = Date.now();
    const res = await postCompat(slow.internalApp);
    // The 200 ms timeout, not the default 10 s (room for a loaded machine's database writes).
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(res.status).toBe(504);
    expect(res.body).toEqual({
      code: 20503,
      message: expect.stringMatching(/did not answer in time/),
      more_info: expect.stringMatching(/^https:\/\//),
      status: 504,
    });
  });

  it('When SignalWire does not answer within SIGNALWIRE_TIMEOUT_MS, then the native caller gets 504 in the errors shape', async () => {
    const res = await postNative(slow.internalApp);
    expect(res.status).toBe(504);
    expect(res.body).toEqual({
      errors: [
        expect.objectContaining({ type: 'api_error', code: 'upstream_timeout', attribute: null }),
      ],
    });
  });

  it.each([
    { api: 'compatibility', post: postCompat, body: { code: 20503, status: 502 } },
    {
      api: 'native',
      post: postNative,
      body: { errors: [expect.objectContaining({ code: 'upstream_unreachable' })] },
    },
  ])(
    'When SignalWire is unreachable, then the $api caller gets 502 in its shape',
    async ({ post, body }) => {
      const res = await post(down.internalApp);
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject(body);
    },
  );

  it('When upstream calls time out or fail, then each outcome reaches the metrics hook and /metrics', async () => {
    const app = createInternalApp({
      ...slow.deps,
      proxyHooks: { onUpstream: (api, status) => upstream.push([api, status]) },
    });
    await postCompat(app);
    expect(upstream).toEqual([['cxml', 'timeout']]);

    const metrics = await request(slow.internalApp).get('/metrics');
    expect(metrics.text).toMatch(
      /sw_status_upstream_request_duration_seconds_count\{api="cxml",status="timeout"\} [1-9]/,
    );
  });

  it('When a send fails upstream, then the logs never carry the caller’s credentials', async () => {
    const lines: string[] = [];
    const logger = createLogger('trace', { write: (line: string) => void lines.push(line) });
    const app = createInternalApp({ ...down.deps, logger });
    await postCompat(app);
    await postNative(app);
    const log = lines.join('');
    expect(log).toMatch(/SignalWire unreachable/);
    expect(log).not.toContain(AUTH.slice('Basic '.length));
    expect(log).not.toContain(TOKEN);
  });
});

describe('the query API is untouched by the proxy', () => {
  it('When /v1 is called without a bearer token, then it is still refused', async () => {
    const t = await createTestApp();
    try {
      const res = await request(t.internalApp).get('/v1/messages/x');
      expect(res.status).toBe(401);
      const ok = await request(t.internalApp)
        .get('/v1/messages/x')
        .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
      expect(ok.status).toBe(404);
    } finally {
      await t.close();
    }
  });
});
