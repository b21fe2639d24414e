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
import { curlDataUrlencode, formPairs, rawRequest, sdkClient, startTappedProxy } from './support';
import type { Listening, TappedProxy, UpstreamTap } from './support';

/**
 * The compatibility (cXML/LaML) create through the proxy: the official SDK and the seed's
 * curl example against the internal app, SignalWire played by the simulator behind a tap that
 * records what the proxy forwarded. Callbacks are not exercised here (test/e2e does): the
 * simulator's steps are an hour apart and are cancelled when it closes.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTcompatproxytesttoken';
const FROM = '+15551234567';
const AUTH = basicAuthHeader(PROJECT, TOKEN);
const COMPAT_PATH = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;
const CALLBACK_URL = new RegExp(
  `^${TEST_PUBLIC_BASE_URL.replace(/\./g, '\\.')}/callbacks/cxml/([A-Za-z0-9_.-]+)$`,
);

let sim: RunningSimulator;
let stack: TappedProxy;
let tap: UpstreamTap;
let t: TestApp;
let proxy: Listening;

beforeAll(async () => {
  sim = await startSimulator({ stepDelayMs: 3_600_000 });
  stack = await startTappedProxy({ forwardTo: sim.url });
  ({ tap, t, proxy } = stack);
});

afterAll(async () => {
  await stack.close();
  await sim.close();
});

function getMessage(id: string) {
  return request(t.internalApp)
    .get(`/v1/messages/${id}`)
    .set('Authorization', `Bearer ${TEST_API_TOKEN}`);
}

function postForm(body: string, { path = COMPAT_PATH, auth = AUTH as string | null } = {}) {
  const req = request(t.internalApp)
    .post(path)
    .set('Content-Type', 'application/x-www-form-urlencoded');
  if (auth) req.set('Authorization', auth);
  return req.send(body);
}

/** The callback token the proxy put in a forwarded form, checked against the secret. */
function injectedRef(callbackUrl: string | undefined): string | null {
  const token = CALLBACK_URL.exec(callbackUrl ?? '')?.[1];
  return token ? (verifyCallbackToken([TEST_TOKEN_SECRET], token)?.ref ?? null) : null;
}

describe('seed 002 curl example', () => {
  it('When a form with every field and repeated MediaUrl is posted, then it is forwarded unchanged except StatusCallback and SignalWire’s answer comes back verbatim', async () => {
    const fields: Array<[string, string]> = [
      ['To', '+15557654321'],
      ['From', FROM],
      ['Body', 'Hello World! ünïcode & symbols=+'],
      ['MediaUrl', 'https://example.com/b.png'],
      ['MediaUrl', 'https://example.com/a.png?size=large&x=1'],
      ['SendAsMms', 'true'],
      ['ApplicationSid', '2e7d8c3a-5b1f-4f6e-9a0b-1c2d3e4f5a6b'],
      ['MaxPrice', '0.0075'],
      ['StatusCallback', 'https://app.example.com/sms/status?tenant=acme'],
      ['ValidityPeriod', '3600'],
      ['MessagingServiceSid', '0a059168-ead0-41af-9d1f-343dae832527'],
    ];
    const before = tap.requests.length;
    const res = await postForm(curlDataUrlencode(fields)).set('User-Agent', 'curl/8.5.0');

    expect(res.status).toBe(201);
    expect(tap.requests).toHaveLength(before + 1);
    const forwarded = tap.requests.at(-1)!;
    expect(forwarded.path).toBe(COMPAT_PATH);
    expect(forwarded.headers['authorization']).toBe(AUTH);
    expect(forwarded.headers['user-agent']).toBe('curl/8.5.0');
    expect(forwarded.headers['content-type']).toBe('application/x-www-form-urlencoded');
    const sent = formPairs(forwarded.body);
    const callback = sent.find(([k]) => k === 'StatusCallback')?.[1];
    // The ApplicationSid is left out: with a StatusCallback given, its only effect would be to
    // take the callbacks past the proxy, should SignalWire let the Application's win.
    expect(sent).toEqual(
      fields
        .filter(([k]) => k !== 'ApplicationSid')
        .map(([k, v]) => [k, k === 'StatusCallback' ? callback : v]),
    );
    const ref = injectedRef(callback);
    expect(ref).not.toBeNull();

    // Verbatim: the bytes and content type SignalWire answered.
    expect(res.headers['content-type']).toBe(forwarded.response?.contentType);
    expect(Buffer.from(res.text)).toEqual(forwarded.response?.body);
    const answer = JSON.parse(res.text) as { sid: string; status: string };
    expect(answer.status).toBe('queued');

    const stored = await getMessage(answer.sid);
    expect(stored.status).toBe(200);
    expect(stored.body).toMatchObject({
      id: answer.sid,
      api: 'cxml',
      project_id: PROJECT,
      from: FROM,
      to: '+15557654321',
      kind: 'mms',
      status: 'queued',
      num_media: 2,
      ref,
      sent_via_proxy: true,
      client_status_callback: 'https://app.example.com/sms/status?tenant=acme',
    });
    expect(stored.body).not.toHaveProperty('body');
    expect(stored.body.history).toEqual([
      expect.objectContaining({ status: 'queued', raw_status: 'queued', source: 'proxy' }),
    ]);
  });

  it('When a form repeats a single-valued field, then only its first value goes upstream, the one recorded, and repeated MediaUrl stays whole', async () => {
    const fields: Array<[string, string]> = [
      ['To', '+15557654000'],
      ['From', FROM],
      ['To', '+15557654999'],
      ['Body', 'first body'],
      ['MediaUrl', 'https://example.com/1.png'],
      ['Body', 'second body'],
      ['MediaUrl', 'https://example.com/2.png'],
      ['From', '+15550000000'],
      ['SendAsMms', 'true'],
      ['SendAsMms', 'nonsense'],
    ];
    const before = tap.requests.length;
    const res = await postForm(curlDataUrlencode(fields));

    expect(res.status).toBe(201);
    expect(tap.requests).toHaveLength(before + 1);
    const sent = formPairs(tap.requests.at(-1)!.body);
    const callback = sent.find(([k]) => k === 'StatusCallback')?.[1];
    expect(sent).toEqual([
      ['To', '+15557654000'],
      ['From', FROM],
      ['Body', 'first body'],
      ['MediaUrl', 'https://example.com/1.png'],
      ['MediaUrl', 'https://example.com/2.png'],
      ['SendAsMms', 'true'],
      ['StatusCallback', callback],
    ]);
    const answer = JSON.parse(res.text) as { sid: string; to: string };
    expect(answer.to).toBe('+15557654000');
    const stored = await getMessage(answer.sid);
    expect(stored.body).toMatchObject({ to: '+15557654000', from: FROM, num_media: 2 });
  });

  // A form library renders an unset hidden field as "" and the app's own value after it; going
  // straight to SignalWire (Rails: the last value of a repeated key wins) the app gets its
  // callbacks, so through the proxy its URL must be recorded and relayed to, not read as absent.
  it('When StatusCallback is repeated with an empty first value, then the caller’s callback URL is recorded and only the proxy’s goes upstream', async () => {
    const before = tap.requests.length;
    const res = await postForm(
      `To=%2B15557654321&From=${encodeURIComponent(FROM)}&Body=hi` +
        '&StatusCallback=&StatusCallback=https%3A%2F%2Fapp.example.com%2Fcb',
    );
    expect(res.status).toBe(201);
    expect(tap.requests).toHaveLength(before + 1);
    const forwarded = formPairs(tap.requests.at(-1)!.body).filter(([k]) => k === 'StatusCallback');
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]![1]).toMatch(CALLBACK_URL);
    const stored = await getMessage((JSON.parse(res.text) as { sid: string }).sid);
    expect(stored.body.client_status_callback).toBe('https://app.example.com/cb');
  });

  it('When a JSON StatusCallback is a list whose first item is empty, then the caller’s callback URL is recorded', async () => {
    const res = await request(t.internalApp)
      .post(COMPAT_PATH)
      .set('Content-Type', 'application/json')
      .set('Authorization', AUTH)
      .send({
        To: '+15557654321',
        From: FROM,
        Body: 'hi',
        StatusCallback: ['', 'https://app.example.com/cb'],
      });
    expect(res.status).toBe(201);
    const stored = await getMessage((JSON.parse(res.text) as { sid: string }).sid);
    expect(stored.body.client_status_callback).toBe('https://app.example.com/cb');
  });

  it('When Body is repeated with an empty first value, then the first given Body goes upstream alone', async () => {
    const before = tap.requests.length;
    const res = await postForm(
      `To=%2B15557654321&From=${encodeURIComponent(FROM)}&Body=&Body=hello&Body=later&To=%2B15550000000`,
    );
    expect(res.status).toBe(201);
    expect(tap.requests).toHaveLength(before + 1);
    const forwarded = formPairs(tap.requests.at(-1)!.body);
    expect(forwarded.filter(([k]) => k === 'Body')).toEqual([['Body', 'hello']]);
    expect(forwarded.filter(([k]) => k === 'To')).toEqual([['To', '+15557654321']]);
  });

  it.each([
    ['/api/laml/2010-04-01', ''],
    ['/api/laml/2010-04-01', '.json'],
    ['/2010-04-01', ''],
    ['/2010-04-01', '.json'],
  ])(
    'When the create path is %s/Accounts/…/Messages%s, then the send is proxied to the same path',
    async (prefix, suffix) => {
      const path = `${prefix}/Accounts/${PROJECT}/Messages${suffix}`;
      const res = await postForm(
        curlDataUrlencode([
          ['To', '+15557650000'],
          ['From', FROM],
          ['Body', 'x'],
        ]),
        { path },
      );
      expect(res.status).toBe(201);
      expect(tap.requests.at(-1)?.path).toBe(path);
    },
  );

  it('When JSON is posted, then it is forwarded as JSON with StatusCallback set in its place', async () => {
    const res = await request(t.internalApp)
      .post(COMPAT_PATH)
      .set('Authorization', AUTH)
      .set('Content-Type', 'application/json')
      .send(
        JSON.stringify({
          To: '+15557650000',
          From: FROM,
          Body: 'x',
          MediaUrl: ['https://example.com/1.png'],
        }),
      );
    expect(res.status).toBe(201);
    const forwarded = tap.requests.at(-1)!;
    expect(forwarded.headers['content-type']).toBe('application/json');
    const json = JSON.parse(forwarded.body) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(['To', 'From', 'Body', 'MediaUrl', 'StatusCallback']);
    expect(json['MediaUrl']).toEqual(['https://example.com/1.png']);
    expect(injectedRef(json['StatusCallback'] as string)).not.toBeNull();
  });
});

describe('the official SDK', () => {
  it('When the SDK sends with its own statusCallback, then the message is created, the callback replaced and the client’s kept', async () => {
    const client = sdkClient(proxy.url, PROJECT, TOKEN);
    const message = await client.messages.create({
      from: FROM,
      to: '+15557650000',
      body: 'Hello from the SDK',
      mediaUrl: ['https://example.com/1.png', 'https://example.com/2.png'],
      statusCallback: 'https://app.example.com/cb',
    });
    expect(message.status).toBe('queued');
    expect(message.numMedia).toBe(2);

    const forwarded = tap.requests.at(-1)!;
    expect(forwarded.path).toBe(`/2010-04-01/Accounts/${PROJECT}/Messages.json`);
    expect(forwarded.headers['user-agent']).toMatch(/signalwire|twilio/i);
    const sent = formPairs(forwarded.body);
    expect(sent.filter(([k]) => k === 'MediaUrl').map(([, v]) => v)).toEqual([
      'https://example.com/1.png',
      'https://example.com/2.png',
    ]);
    const callback = sent.find(([k]) => k === 'StatusCallback')?.[1];
    const ref = injectedRef(callback);
    expect(ref).not.toBeNull();
    // What SignalWire (the simulator) will call back: this service, not the client.
    expect(sim.messages.find((m) => m.id === message.sid)?.statusCallback).toBe(callback);

    const stored = await getMessage(message.sid);
    expect(stored.body).toMatchObject({
      ref,
      sent_via_proxy: true,
      client_status_callback: 'https://app.example.com/cb',
      kind: 'mms',
    });
  });

  it('When the SDK sends without a statusCallback, then the proxy injects its own anyway', async () => {
    const message = await sdkClient(proxy.url, PROJECT, TOKEN).messages.create({
      from: FROM,
      to: '+15557650000',
      body: 'x',
    });
    const callback = sim.messages.find((m) => m.id === message.sid)?.statusCallback ?? undefined;
    expect(callback).toMatch(CALLBACK_URL);
    expect(injectedRef(callback)).not.toBeNull();
    const stored = await getMessage(message.sid);
    expect(stored.body).toMatchObject({
      client_status_callback: null,
      sent_via_proxy: true,
      kind: 'sms',
    });
  });

  it('When the SDK sends an invalid To, then it rejects with the proxy’s 400 code 21211 and nothing is forwarded', async () => {
    const before = tap.requests.length;
    await expect(
      sdkClient(proxy.url, PROJECT, TOKEN).messages.create({
        from: FROM,
        to: '5557650000',
        body: 'x',
      }),
    ).rejects.toMatchObject({
      status: 400,
      code: 21211,
      moreInfo: expect.stringMatching(/^https:/),
    });
    expect(tap.requests).toHaveLength(before);
  });
});

describe('requests that cannot succeed', () => {
  const valid: Array<[string, string]> = [
    ['To', '+15557650000'],
    ['From', FROM],
    ['Body', 'x'],
  ];
  const without = (key: string) => valid.filter(([k]) => k !== key);
  const media = (n: number): Array<[string, string]> =>
    Array.from({ length: n }, (_, i) => ['MediaUrl', `https://example.com/${i}.png`]);

  it.each<{ name: string; fields: Array<[string, string]>; code: number }>([
    { name: 'To is missing', fields: without('To'), code: 21604 },
    {
      name: 'To is not E.164',
      fields: [
        ['To', '5557650000'],
        ['From', FROM],
        ['Body', 'x'],
      ],
      code: 21211,
    },
    { name: 'neither Body nor MediaUrl is given', fields: without('Body'), code: 21619 },
    {
      name: 'Body is empty and there is no media',
      fields: [...without('Body'), ['Body', '']],
      code: 21602,
    },
    { name: 'nine media are attached', fields: [...without('Body'), ...media(9)], code: 21623 },
    {
      name: 'a media URL is not http(s)',
      fields: [...valid, ['MediaUrl', 'ftp://example.com/a.png']],
      code: 21620,
    },
    { name: 'ValidityPeriod is 0', fields: [...valid, ['ValidityPeriod', '0']], code: 21624 },
    {
      name: 'ValidityPeriod is 172801',
      fields: [...valid, ['ValidityPeriod', '172801']],
      code: 21624,
    },
    {
      name: 'MaxPrice has five decimals',
      fields: [...valid, ['MaxPrice', '0.00001']],
      code: 21627,
    },
    { name: 'MaxPrice is not a number', fields: [...valid, ['MaxPrice', 'cheap']], code: 21627 },
    { name: 'From and MessagingServiceSid are both missing', fields: without('From'), code: 21603 },
    {
      name: 'StatusCallback is relative',
      fields: [...valid, ['StatusCallback', '/hooks/sms']],
      code: 21609,
    },
    {
      name: 'StatusCallback carries credentials',
      fields: [...valid, ['StatusCallback', 'https://user:pw@app.example.com/cb']],
      code: 21609,
    },
    {
      name: 'StatusCallback hides a newline',
      fields: [...valid, ['StatusCallback', 'https://app.example.com/\ncb']],
      code: 21609,
    },
    {
      name: 'StatusCallback is longer than 2048 characters',
      fields: [...valid, ['StatusCallback', `https://app.example.com/${'a'.repeat(2048)}`]],
      code: 21609,
    },
  ])(
    'When $name, then the answer is 400 code $code in the compatibility shape and nothing is forwarded',
    async ({ fields, code }) => {
      const before = tap.requests.length;
      const res = await postForm(curlDataUrlencode(fields));
      expect(res.status).toBe(400);
      expect(res.body).toEqual({
        code,
        message: expect.any(String),
        more_info: `https://developer.signalwire.com/rest/compatibility-api/overview/error-codes#${code}`,
        status: 400,
      });
      expect(tap.requests).toHaveLength(before);
    },
  );

  it.each([
    { query: '?StatusCallback=https%3A%2F%2Fapp.example.com%2Fcb', code: 21609 },
    { query: '?trace=1&Status%43allback=https://app.example.com/cb', code: 21609 },
    { query: '?StatusCallback[]=https://app.example.com/cb', code: 21609 },
    { query: '?ApplicationSid=0a059168-ead0-41af-9d1f-343dae832527', code: 21218 },
  ])(
    'When the query string carries where callbacks go ($query), then the answer is 400 code $code and nothing is forwarded (SignalWire could read it there, and the caller’s callback would be lost)',
    async ({ query, code }) => {
      const before = tap.requests.length;
      const res = await postForm(curlDataUrlencode(valid), { path: `${COMPAT_PATH}${query}` });
      expect(res.status).toBe(400);
      expect(res.body).toEqual({
        code,
        message: expect.stringMatching(/query string/),
        more_info: `https://developer.signalwire.com/rest/compatibility-api/overview/error-codes#${code}`,
        status: 400,
      });
      expect(tap.requests).toHaveLength(before);
    },
  );

  it.each([
    { name: 'StatusCallback[]', code: 21609 },
    { name: 'ApplicationSid[]', code: 21218 },
    { name: 'StatusCallback[x]', code: 21609 },
  ])(
    'When the form names $name (a callback field with brackets), then the answer is 400 code $code and nothing is forwarded (a lenient server reads it as the field itself)',
    async ({ name, code }) => {
      const before = tap.requests.length;
      const res = await postForm(
        curlDataUrlencode([...valid, [name, '0a059168-ead0-41af-9d1f-343dae832527']]),
      );
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ code, status: 400 });
      expect(res.body.message).toContain(`'${name}'`);
      expect(tap.requests).toHaveLength(before);
    },
  );

  it('When the query string carries other parameters, then the send goes through with the query unchanged', async () => {
    const res = await postForm(curlDataUrlencode(valid), {
      path: `${COMPAT_PATH}?trace=StatusCallback&x%5B%5D=1`,
    });
    expect(res.status).toBe(201);
    expect(tap.requests.at(-1)!.path).toBe(`${COMPAT_PATH}?trace=StatusCallback&x%5B%5D=1`);
  });

  it('When exactly eight media and ValidityPeriod 172800 are given, then the send goes through', async () => {
    const res = await postForm(
      curlDataUrlencode([...without('Body'), ...media(8), ['ValidityPeriod', '172800']]),
    );
    expect(res.status).toBe(201);
  });

  it.each([
    { name: 'the JSON is malformed', type: 'application/json', body: '{"To":', status: 400 },
    { name: 'the JSON is not an object', type: 'application/json', body: '["To"]', status: 400 },
    {
      name: 'the form has a broken percent escape',
      type: 'application/x-www-form-urlencoded',
      body: 'To=%2B1555&Body=%zz',
      status: 400,
    },
    { name: 'the body is text/plain', type: 'text/plain', body: 'To=+15557650000', status: 415 },
  ])(
    'When $name, then the answer is $status code 10000 in the compatibility shape and nothing is forwarded',
    async ({ type, body, status }) => {
      const before = tap.requests.length;
      const res = await request(t.internalApp)
        .post(COMPAT_PATH)
        .set('Authorization', AUTH)
        .set('Content-Type', type)
        .send(body);
      expect(res.status).toBe(status);
      expect(res.body).toEqual({
        code: 10000,
        message: expect.any(String),
        more_info: expect.any(String),
        status,
      });
      expect(tap.requests).toHaveLength(before);
    },
  );

  it('When the form carries a byte that is not UTF-8 (a raw Latin-1 é), then the answer is 400 code 10000 and nothing is forwarded, rather than a body with U+FFFD in its place', async () => {
    const before = tap.requests.length;
    const form = Buffer.concat([
      Buffer.from(`${curlDataUrlencode(without('Body'))}&Body=caf`),
      Buffer.from([0xe9]),
    ]);
    // A real socket: supertest would serialize a Buffer given with a form Content-Type.
    const res = await rawRequest(proxy.port, {
      method: 'POST',
      path: COMPAT_PATH,
      headers: {
        authorization: AUTH,
        'content-type': 'application/x-www-form-urlencoded',
        'content-length': String(form.length),
      },
      body: form,
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body.toString('utf8'))).toMatchObject({
      code: 10000,
      message: expect.stringMatching(/UTF-8/),
    });
    expect(tap.requests).toHaveLength(before);
  });

  it('When the body is larger than 256 KiB, then the answer is 413 in the compatibility shape and nothing is forwarded', async () => {
    const before = tap.requests.length;
    const res = await postForm(curlDataUrlencode([...valid, ['Padding', 'x'.repeat(300 * 1024)]]));
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({ code: 10000, status: 413 });
    expect(tap.requests).toHaveLength(before);
  });
});

describe('credentials', () => {
  const body = curlDataUrlencode([
    ['To', '+15557650000'],
    ['From', FROM],
    ['Body', 'x'],
  ]);

  it('When no credentials are sent, then the answer is 401 code 20003 with a Basic challenge and nothing is forwarded', async () => {
    const before = tap.requests.length;
    const res = await postForm(body, { auth: null });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Basic/);
    expect(res.body).toMatchObject({ code: 20003, status: 401 });
    expect(tap.requests).toHaveLength(before);
  });

  it('When the credentials are not Basic, then the answer is 401 code 20003', async () => {
    const res = await postForm(body, { auth: 'Bearer something' });
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ code: 20003 });
  });

  it('When the AccountSid in the path is not the Basic username, then the answer is 401 code 20003 (as SignalWire answers) and nothing is forwarded', async () => {
    const before = tap.requests.length;
    const res = await postForm(body, {
      path: '/api/laml/2010-04-01/Accounts/another-project/Messages.json',
    });
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ code: 20003, status: 401 });
    expect(tap.requests).toHaveLength(before);
  });
});

describe('project allow-list (SIGNALWIRE_PROJECT_IDS)', () => {
  let limited: TestApp;

  beforeAll(async () => {
    limited = await createTestApp({
      SIGNALWIRE_SPACE_URL: tap.url,
      SIGNALWIRE_PROJECT_IDS: `11111111-2222-4333-8444-555555555555, ${PROJECT}`,
    });
  });

  afterAll(async () => {
    await limited.close();
  });

  it('When a project outside the list sends, then the answer is 403 code 20006 and nothing is forwarded', async () => {
    const other = '99999999-2222-4333-8444-555555555555';
    const before = tap.requests.length;
    const res = await request(limited.internalApp)
      .post(`/api/laml/2010-04-01/Accounts/${other}/Messages.json`)
      .set('Authorization', basicAuthHeader(other, TOKEN))
      .type('form')
      .send(
        curlDataUrlencode([
          ['To', '+15557650000'],
          ['From', FROM],
          ['Body', 'x'],
        ]),
      );
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ code: 20006, status: 403 });
    expect(tap.requests).toHaveLength(before);
  });

  it('When a header decodes to a listed project only under a lenient reading, then it is refused 401 and nothing is forwarded', async () => {
    // Node's base64 decoder stops at the `=`: it would read the listed project, while the
    // bytes after it carry another project's credentials for a decoder that reads on.
    const lenient = (text: string) => Buffer.from(text).toString('base64');
    const other = '99999999-2222-4333-8444-555555555555';
    const auth = `Basic ${lenient(`${PROJECT}:x`)}=${lenient(`${other}:${TOKEN}`)}`;
    const before = tap.requests.length;
    const res = await request(limited.internalApp)
      .post('/api/messaging/messages')
      .set('Authorization', auth)
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ to: '+15557650000', from: FROM, body: 'x' }));
    expect(res.status).toBe(401);
    expect(tap.requests).toHaveLength(before);
  });

  it('When a listed project sends, then the send goes through', async () => {
    const res = await request(limited.internalApp)
      .post(COMPAT_PATH)
      .set('Authorization', AUTH)
      .type('form')
      .send(
        curlDataUrlencode([
          ['To', '+15557650000'],
          ['From', FROM],
          ['Body', 'x'],
        ]),
      );
    expect(res.status).toBe(201);
  });
});
