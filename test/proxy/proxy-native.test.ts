import request from 'supertest';
import { verifyCallbackToken } from '../../src/callbacks/callback-token';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import {
  createTestApp,
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_TOKEN_SECRET,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen, rawRequest, startUpstreamTap } from './support';
import type { UpstreamTap } from './support';

/**
 * The native create (`POST /api/messaging/messages`, JSON) through the proxy, as the seed 001
 * curl example sends it, with the simulator behind a recording tap as SignalWire.
 */

const PROJECT = 'a1b2c3d4-e5f6-4890-abcd-ef1234567890';
const TOKEN = 'PTnativeproxytesttoken';
const AUTH = basicAuthHeader(PROJECT, TOKEN);
const PATH = '/api/messaging/messages';
const CALLBACK_PREFIX = `${TEST_PUBLIC_BASE_URL}/callbacks/native/`;

let sim: RunningSimulator;
let tap: UpstreamTap;
let t: TestApp;

beforeAll(async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
  tap = await startUpstreamTap({ forwardTo: sim.url });
  t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url });
});

afterAll(async () => {
  await t.close();
  await tap.close();
  await sim.close();
});

function send(app: TestApp, body: unknown, auth: string | null = AUTH) {
  const req = request(app.internalApp).post(PATH).set('Content-Type', 'application/json');
  if (auth) req.set('Authorization', auth);
  return req.send(JSON.stringify(body));
}

function getMessage(app: TestApp, id: string) {
  return request(app.internalApp)
    .get(`/v1/messages/${id}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
}

function injectedRef(url: unknown): string | null {
  if (typeof url !== 'string' || !url.startsWith(CALLBACK_PREFIX)) return null;
  return verifyCallbackToken([TEST_TOKEN_SECRET], url.slice(CALLBACK_PREFIX.length))?.ref ?? null;
}

describe('seed 001 curl example', () => {
  it('When the seed’s JSON is posted with custom_variables and a status_callback, then only status_callback changes upstream and SignalWire’s answer comes back verbatim', async () => {
    const seed = {
      to: '+15551234567',
      from: '+15559876543',
      body: 'Your order #12345 has shipped!',
      media: ['https://example.com/tracking.png'],
      status_callback: 'https://app.example.com/hooks/sms?tenant=acme',
      custom_variables: { order_id: '12345', customer: 'Ada' },
      send_as_mms: true,
    };
    const before = tap.requests.length;
    const res = await send(t, seed);

    expect(res.status).toBe(201);
    expect(tap.requests).toHaveLength(before + 1);
    const forwarded = tap.requests.at(-1)!;
    expect(forwarded.path).toBe(PATH);
    expect(forwarded.headers['authorization']).toBe(AUTH);
    expect(forwarded.headers['content-type']).toBe('application/json');
    const json = JSON.parse(forwarded.body) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(Object.keys(seed));
    expect(json).toEqual({ ...seed, status_callback: json['status_callback'] });
    const ref = injectedRef(json['status_callback']);
    expect(ref).not.toBeNull();

    expect(res.headers['content-type']).toBe(forwarded.response?.contentType);
    // SignalWire's answer names the URL it will call: ours, with the token. The caller gets
    // the answer byte for byte, except that it names the caller's own URL (DESIGN §5).
    const upstream = forwarded.response!.body.toString();
    expect(JSON.parse(upstream).status_callback_url).toBe(json['status_callback']);
    expect(res.text).toBe(
      upstream.replace(
        JSON.stringify(json['status_callback']),
        JSON.stringify(seed.status_callback),
      ),
    );
    expect(res.text).not.toContain(String(json['status_callback']).slice(CALLBACK_PREFIX.length));
    const answer = JSON.parse(res.text) as { id: string; status_callback_url: string };
    expect(answer.status_callback_url).toBe(seed.status_callback);

    const stored = await getMessage(t, answer.id);
    expect(stored.body).toMatchObject({
      id: answer.id,
      api: 'native',
      project_id: PROJECT,
      from: '+15559876543',
      to: '+15551234567',
      kind: 'mms',
      status: 'queued',
      num_segments: 1,
      num_media: 1,
      ref,
      sent_via_proxy: true,
      client_status_callback: 'https://app.example.com/hooks/sms?tenant=acme',
    });
    expect(stored.body.history).toEqual([
      expect.objectContaining({
        status: 'queued',
        source: 'proxy',
        provider_timestamp: expect.any(String),
      }),
    ]);

    // The stored answer keeps no body (STORE_BODY is off) and no callback token: it is the
    // answer the caller got.
    const row = await t.database.db
      .selectFrom('status_events')
      .select('raw')
      .where('message_id', '=', answer.id)
      .executeTakeFirstOrThrow();
    const raw = row.raw as Record<string, unknown>;
    expect(raw).not.toHaveProperty('body');
    expect(raw['status_callback_url']).toBe(seed.status_callback);
    expect(JSON.stringify(raw)).not.toContain('/callbacks/native/');
    expect(raw['id']).toBe(answer.id);
  });

  it('When no status_callback is given, then the proxy injects its own anyway', async () => {
    const res = await send(t, { to: '+15551234567', from: '+15559876543', body: 'hi' });
    expect(res.status).toBe(201);
    const json = JSON.parse(tap.requests.at(-1)!.body) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(['to', 'from', 'body', 'status_callback']);
    expect(injectedRef(json['status_callback'])).not.toBeNull();
    // The caller gave no callback URL: the answer says so, as SignalWire's would have.
    expect((res.body as { status_callback_url: unknown }).status_callback_url).toBeNull();
    expect(res.text).not.toContain(CALLBACK_PREFIX);
    const stored = await getMessage(t, (res.body as { id: string }).id);
    expect(stored.body).toMatchObject({ client_status_callback: null, kind: 'sms' });
  });

  it('When status_callback carries SignalWire’s #rt=/#ot= timeout overrides, then the send is forwarded and the caller gets its URL back as given', async () => {
    const callback = 'https://app.example.com/hooks/sms-status#rt=10000&ot=3000';
    const before = tap.requests.length;
    const res = await send(t, {
      to: '+15551234567',
      from: '+15559876543',
      body: 'hi',
      status_callback: callback,
    });
    expect(res.status).toBe(201);
    expect(tap.requests).toHaveLength(before + 1);
    expect((res.body as { status_callback_url: unknown }).status_callback_url).toBe(callback);
    const stored = await getMessage(t, (res.body as { id: string }).id);
    expect(stored.body).toMatchObject({ client_status_callback: callback });
  });

  it('When the request has no Content-Type, then it is read as JSON like the native API does', async () => {
    const res = await request(t.internalApp)
      .post(PATH)
      .set('Authorization', AUTH)
      .send(Buffer.from(JSON.stringify({ to: '988', from: '+15559876543', body: 'hi' })));
    expect(res.status).toBe(201);
  });
});

describe('requests that cannot succeed', () => {
  const valid = { to: '+15551234567', from: '+15559876543', body: 'hi' };
  const media = (n: number) => Array.from({ length: n }, (_, i) => `https://example.com/${i}.png`);

  it.each([
    {
      name: 'to is missing',
      body: { ...valid, to: undefined },
      code: 'missing_required_parameter',
      attribute: 'to',
    },
    {
      name: 'to is not E.164',
      body: { ...valid, to: '5551234567' },
      code: 'invalid_parameter',
      attribute: 'to',
    },
    {
      name: 'neither body nor media is given',
      body: { ...valid, body: undefined },
      code: 'body_or_media_required',
      attribute: 'body',
    },
    {
      name: 'nine media are attached',
      body: { ...valid, media: media(9) },
      code: 'invalid_parameter',
      attribute: 'media',
    },
    {
      name: 'a media URL is not http(s)',
      body: { ...valid, media: ['ftp://example.com/a.png'] },
      code: 'invalid_parameter',
      attribute: 'media',
    },
    {
      name: 'a custom variable uses a reserved prefix',
      body: { ...valid, custom_variables: { sw_id: '1' } },
      code: 'invalid_parameter',
      attribute: 'custom_variables',
    },
    {
      name: 'a custom variable is not a string',
      body: { ...valid, custom_variables: { id: 12345 } },
      code: 'invalid_parameter',
      attribute: 'custom_variables',
    },
    {
      name: 'custom_variables is not an object',
      body: { ...valid, custom_variables: ['id'] },
      code: 'invalid_parameter',
      attribute: 'custom_variables',
    },
    {
      name: 'status_callback is not an absolute URL',
      body: { ...valid, status_callback: 'app.example.com/cb' },
      code: 'invalid_parameter',
      attribute: 'status_callback',
    },
    {
      name: 'status_callback carries credentials',
      body: { ...valid, status_callback: 'https://user:pw@app.example.com/cb' },
      code: 'invalid_parameter',
      attribute: 'status_callback',
    },
  ])(
    'When $name, then the answer is 422 $code on $attribute and nothing is forwarded',
    async ({ body, code, attribute }) => {
      const before = tap.requests.length;
      const res = await send(t, body);
      expect(res.status).toBe(422);
      expect(res.body).toEqual({
        errors: [
          {
            type: 'validation_error',
            code,
            message: expect.any(String),
            attribute,
            url: `https://developer.signalwire.com/rest/overview/error-codes/#${code}`,
          },
        ],
      });
      expect(tap.requests).toHaveLength(before);
    },
  );

  it('When the query string carries status_callback, then the answer is 422 on status_callback and nothing is forwarded (SignalWire could read it there, and the caller’s callback would be lost)', async () => {
    const before = tap.requests.length;
    const res = await request(t.internalApp)
      .post(`${PATH}?status_callback=${encodeURIComponent('https://app.example.com/cb')}`)
      .set('Authorization', AUTH)
      .set('Content-Type', 'application/json')
      .send(JSON.stringify(valid));
    expect(res.status).toBe(422);
    expect(res.body).toEqual({
      errors: [
        {
          type: 'validation_error',
          code: 'invalid_parameter',
          message: expect.stringMatching(/query string/),
          attribute: 'status_callback',
          url: 'https://developer.signalwire.com/rest/overview/error-codes/#invalid_parameter',
        },
      ],
    });
    expect(tap.requests).toHaveLength(before);
  });

  it('When several rules are broken, then every problem is answered at once', async () => {
    const res = await send(t, { to: 'nope', media: ['ftp://x'] });
    expect(res.status).toBe(422);
    expect(
      (res.body as { errors: Array<{ attribute: string }> }).errors.map((e) => e.attribute),
    ).toEqual(['to', 'from', 'media']);
  });

  it.each([
    { name: 'the JSON is malformed', type: 'application/json', body: '{"to":', status: 400 },
    {
      name: 'the body is a form',
      type: 'application/x-www-form-urlencoded',
      body: 'to=%2B15551234567',
      status: 415,
    },
  ])(
    'When $name, then the answer is $status in the native errors shape and nothing is forwarded',
    async ({ type, body, status }) => {
      const before = tap.requests.length;
      const res = await request(t.internalApp)
        .post(PATH)
        .set('Authorization', AUTH)
        .set('Content-Type', type)
        .send(body);
      expect(res.status).toBe(status);
      expect(res.body).toEqual({
        errors: [
          expect.objectContaining({
            type: 'invalid_request_error',
            code: 'invalid_parameter',
            attribute: null,
          }),
        ],
      });
      expect(tap.requests).toHaveLength(before);
    },
  );

  it('When the JSON is not UTF-8 (a Latin-1 é), then the answer is 400 and nothing is forwarded, rather than a body with U+FFFD in its place', async () => {
    const before = tap.requests.length;
    const json = Buffer.concat([
      Buffer.from('{"to":"+15551234567","from":"+15559876543","body":"caf'),
      Buffer.from([0xe9]),
      Buffer.from('"}'),
    ]);
    // A real socket: supertest would serialize a Buffer given with a JSON Content-Type.
    const proxy = await listen(t.internalApp);
    try {
      const res = await rawRequest(proxy.port, {
        method: 'POST',
        path: PATH,
        headers: {
          authorization: AUTH,
          'content-type': 'application/json',
          'content-length': String(json.length),
        },
        body: json,
      });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body.toString('utf8'))).toEqual({
        errors: [
          expect.objectContaining({
            type: 'invalid_request_error',
            code: 'invalid_parameter',
            message: expect.stringMatching(/UTF-8/),
          }),
        ],
      });
    } finally {
      await proxy.close();
    }
    expect(tap.requests).toHaveLength(before);
  });

  it('When the body is larger than 256 KiB, then the answer is 413 in the native errors shape', async () => {
    const res = await send(t, { ...valid, padding: 'x'.repeat(300 * 1024) });
    expect(res.status).toBe(413);
    expect(res.body).toEqual({
      errors: [expect.objectContaining({ type: 'invalid_request_error' })],
    });
  });
});

describe('credentials', () => {
  const body = { to: '+15551234567', from: '+15559876543', body: 'hi' };

  it('When no credentials are sent, then the answer is 401 in the native errors shape and nothing is forwarded', async () => {
    const before = tap.requests.length;
    const res = await send(t, body, null);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Basic/);
    expect(res.body).toEqual({
      errors: [
        expect.objectContaining({
          type: 'authentication_error',
          code: 'unauthorized',
          attribute: null,
        }),
      ],
    });
    expect(tap.requests).toHaveLength(before);
  });

  it('When the project is not in SIGNALWIRE_PROJECT_IDS, then the answer is 403 in the native errors shape and nothing is forwarded', async () => {
    const limited = await createTestApp({
      SIGNALWIRE_SPACE_URL: tap.url,
      SIGNALWIRE_PROJECT_IDS: '11111111-2222-4333-8444-555555555555',
    });
    try {
      const before = tap.requests.length;
      const res = await send(limited, body);
      expect(res.status).toBe(403);
      expect(res.body).toEqual({
        errors: [
          expect.objectContaining({
            type: 'authorization_error',
            code: 'forbidden',
            attribute: null,
          }),
        ],
      });
      expect(tap.requests).toHaveLength(before);
    } finally {
      await limited.close();
    }
  });
});

describe('STORE_BODY=true', () => {
  it('When bodies are stored, then the proxied message and its first event keep the body', async () => {
    const storing = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url, STORE_BODY: 'true' });
    try {
      const res = await send(storing, {
        to: '+15551234567',
        from: '+15559876543',
        body: 'keep me',
      });
      expect(res.status).toBe(201);
      const { id } = res.body as { id: string };
      const stored = await getMessage(storing, id);
      expect(stored.body).toMatchObject({ body: 'keep me' });
      const row = await storing.database.db
        .selectFrom('status_events')
        .select('raw')
        .where('message_id', '=', id)
        .executeTakeFirstOrThrow();
      expect(row.raw).toMatchObject({ body: 'keep me' });
    } finally {
      await storing.close();
    }
  });
});
