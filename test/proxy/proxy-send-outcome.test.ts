import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { createInternalApp } from '../../src/app';
import type { Api } from '../../src/messages/statuses';
import type { UpstreamStatus } from '../../src/proxy/signalwire-client';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import {
  closedPort,
  formPairs,
  listen,
  listenTcp,
  rawRequest,
  startTappedProxy,
  startUpstreamTap,
} from './support';
import type { CannedResponse, Listening, TappedProxy, UpstreamTap } from './support';

/**
 * What a caller is told when SignalWire's answer to a create does not come, and what becomes
 * of the send's intent (the caller's own callback, kept so that SignalWire's callbacks reach
 * it, DESIGN §10). Only a send that never left is "not sent": once the request may have been
 * written, SignalWire may have queued the message, the caller must not be invited to send it
 * again, and its callback must still be relayed when SignalWire's arrives.
 */

const PROJECT = 'c3d4e5f6-a7b8-4901-8def-234567890abc';
const AUTH = basicAuthHeader(PROJECT, 'PTsendoutcometoken');
const COMPAT_PATH = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;
const NATIVE_PATH = '/api/messaging/messages';

/** A caller's own callback URL, unique per test so its intent can be found. */
function clientCallback(): string {
  return `https://app.example.com/sms/status/${randomUUID()}`;
}

function postCompat(t: TestApp, statusCallback: string) {
  return request(t.internalApp)
    .post(COMPAT_PATH)
    .set('Authorization', AUTH)
    .type('form')
    .send({ To: '+15557650000', From: '+15551234567', Body: 'x', StatusCallback: statusCallback });
}

function postNative(t: TestApp, statusCallback: string) {
  return request(t.internalApp)
    .post(NATIVE_PATH)
    .set('Authorization', AUTH)
    .set('Content-Type', 'application/json')
    .send(
      JSON.stringify({
        to: '+15557650000',
        from: '+15551234567',
        body: 'x',
        status_callback: statusCallback,
      }),
    );
}

async function intents(t: TestApp, statusCallback: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM send_intents WHERE client_status_callback = ${statusCallback}
  `.execute(t.database.db);
  return rows[0]!.n;
}

/** SignalWire's status callback for the send the tap received, by the token it was given. */
async function callbackFromSignalWire(t: TestApp, forwarded: string, messageSid: string) {
  const tokenUrl = new URL(new URLSearchParams(forwarded).get('StatusCallback')!);
  return request(t.publicApp).post(tokenUrl.pathname).type('form').send({
    MessageSid: messageSid,
    MessageStatus: 'delivered',
    AccountSid: PROJECT,
    To: '+15557650000',
    From: '+15551234567',
  });
}

async function relaysTo(t: TestApp, messageSid: string): Promise<string[]> {
  const { rows } = await sql<{ url: string }>`
    SELECT url FROM relay_jobs WHERE message_id = ${messageSid}
  `.execute(t.database.db);
  return rows.map((row) => row.url);
}

describe('the connection drops after SignalWire has the whole send', () => {
  let dropping: UpstreamTap;
  let t: TestApp;

  beforeAll(async () => {
    dropping = await startUpstreamTap('drop');
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: dropping.url });
  });

  afterAll(async () => {
    await t.close();
    await dropping.close();
  });

  it('When the compatibility send’s connection is reset before the answer, then the caller gets 502 saying the outcome is unknown, not that it was not sent', async () => {
    const mine = clientCallback();
    const res = await postCompat(t, mine);

    expect(dropping.requests.at(-1)?.body).toContain('To=%2B15557650000');
    expect(res.status).toBe(502);
    expect(res.body).toEqual({
      code: 20503,
      message: expect.stringMatching(/outcome is unknown.*may have been sent/),
      more_info: expect.stringMatching(/^https:\/\//),
      status: 502,
    });
    expect(res.body.message).not.toMatch(/not sent/);
  });

  it('When the connection is reset before the answer, then SignalWire’s later callback is still relayed to the caller’s own callback', async () => {
    const mine = clientCallback();
    await postCompat(t, mine);
    expect(await intents(t, mine)).toBe(1);

    // SignalWire did queue it: its callback comes with the send's token.
    const sid = randomUUID();
    const callback = await callbackFromSignalWire(t, dropping.requests.at(-1)!.body, sid);
    expect(callback.status).toBe(200);
    expect(await relaysTo(t, sid)).toEqual([mine]);
  });

  it('When the native send’s connection is reset before the answer, then the caller gets 502 upstream_outcome_unknown and the intent is kept', async () => {
    const mine = clientCallback();
    const res = await postNative(t, mine);
    expect(res.status).toBe(502);
    expect(res.body).toEqual({
      errors: [
        expect.objectContaining({
          type: 'api_error',
          code: 'upstream_outcome_unknown',
          message: expect.stringMatching(/may have been sent/),
          attribute: null,
        }),
      ],
    });
    expect(await intents(t, mine)).toBe(1);
  });

  it('When the connection is reset before the answer, then the metrics count it as no answer (unreachable), not as a timeout', async () => {
    const seen: Array<[Api, UpstreamStatus]> = [];
    const app = createInternalApp({
      ...t.deps,
      proxyHooks: { onUpstream: (api, status) => seen.push([api, status]) },
    });
    await request(app)
      .post(NATIVE_PATH)
      .set('Authorization', AUTH)
      .send({ to: '+15557650000', from: '+15551234567', body: 'x' });
    expect(seen).toEqual([['native', 'unreachable']]);
  });
});

describe('the answer is cut off', () => {
  let upstream: Listening;
  let t: TestApp;

  beforeAll(async () => {
    upstream = await listen((req, res) => {
      req.resume();
      req.on('end', () => {
        // SignalWire accepted: the status line and part of the body, then the connection goes.
        res.writeHead(201, { 'content-type': 'application/json', 'content-length': '400' });
        res.write('{"sid":"');
        setTimeout(() => res.socket?.destroy(), 20);
      });
    });
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: upstream.url });
  });

  afterAll(async () => {
    await t.close();
    await upstream.close();
  });

  it('When SignalWire’s answer stops half-way, then the caller gets 502 saying the outcome is unknown and the intent is kept', async () => {
    const mine = clientCallback();
    const res = await postCompat(t, mine);
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ code: 20503, message: expect.stringMatching(/unknown/) });
    expect(await intents(t, mine)).toBe(1);
  });
});

describe('SignalWire (or a gateway in front of it) answers with an error', () => {
  let next: CannedResponse;
  let tap: UpstreamTap;
  let t: TestApp;

  beforeAll(async () => {
    tap = await startUpstreamTap(() => next);
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url });
  });

  afterAll(async () => {
    await t.close();
    await tap.close();
  });

  it.each([
    { status: 502, body: '<html>Bad Gateway</html>' },
    { status: 503, body: '<html>Service Unavailable</html>' },
    { status: 504, body: '<html>Gateway Timeout</html>' },
    { status: 500, body: '{"code":20500,"message":"Internal","status":500}' },
  ])(
    'When the answer is a $status, then it comes back verbatim and the intent is kept, so a later callback is relayed',
    async ({ status, body }) => {
      next = { status, headers: { 'content-type': 'text/html' }, body };
      const mine = clientCallback();
      const res = await postCompat(t, mine);
      expect(res.status).toBe(status);
      expect(res.text).toBe(body);
      expect(await intents(t, mine)).toBe(1);

      const sid = randomUUID();
      expect((await callbackFromSignalWire(t, tap.requests.at(-1)!.body, sid)).status).toBe(200);
      expect(await relaysTo(t, sid)).toEqual([mine]);
    },
  );

  it('When SignalWire refuses the send with a 4xx, then the intent is dropped (the message does not exist)', async () => {
    next = {
      status: 400,
      headers: { 'content-type': 'application/json' },
      body: '{"code":21211,"message":"Invalid To","more_info":"x","status":400}',
    };
    const mine = clientCallback();
    const res = await postCompat(t, mine);
    expect(res.status).toBe(400);
    expect(await intents(t, mine)).toBe(0);
  });
});

describe('SignalWire is never reached', () => {
  it('When the connection is refused, then the caller gets 502 "not sent" and the intent is dropped', async () => {
    const t = await createTestApp({
      SIGNALWIRE_SPACE_URL: `http://127.0.0.1:${await closedPort()}`,
    });
    try {
      const mine = clientCallback();
      const res = await postCompat(t, mine);
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({
        code: 20503,
        message: 'SignalWire could not be reached; the message was not sent',
      });
      expect(await intents(t, mine)).toBe(0);
    } finally {
      await t.close();
    }
  });

  it('When the TLS handshake is cut off (a reset before any request byte), then the caller gets 502 "not sent" and nothing reached the server', async () => {
    let received = 0;
    // Reads the ClientHello and closes: the client sees ECONNRESET, as after a sent request.
    const server = await listenTcp((socket) => {
      socket.once('data', (hello) => {
        received += hello.length;
        socket.destroy();
      });
    });
    const t = await createTestApp({ SIGNALWIRE_SPACE_URL: `https://127.0.0.1:${server.port}` });
    try {
      const mine = clientCallback();
      const res = await postNative(t, mine);
      expect(received).toBeGreaterThan(0);
      expect(res.status).toBe(502);
      expect(res.body).toEqual({
        errors: [
          expect.objectContaining({
            code: 'upstream_unreachable',
            message: 'SignalWire could not be reached; the message was not sent',
          }),
        ],
      });
      expect(await intents(t, mine)).toBe(0);
    } finally {
      await t.close();
      await server.close();
    }
  });

  it('When the TLS handshake does not finish within SIGNALWIRE_TIMEOUT_MS, then the caller gets 502 "not sent" rather than a 504', async () => {
    const server = await listenTcp(() => undefined);
    const t = await createTestApp({
      SIGNALWIRE_SPACE_URL: `https://127.0.0.1:${server.port}`,
      SIGNALWIRE_TIMEOUT_MS: '200',
    });
    try {
      const mine = clientCallback();
      const started = Date.now();
      const res = await postCompat(t, mine);
      // The 200 ms timeout, not the default 10 s (room for a loaded machine's database writes).
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({ message: expect.stringMatching(/was not sent/) });
      expect(await intents(t, mine)).toBe(0);
    } finally {
      await t.close();
      await server.close();
    }
  });
});

describe('the request target', () => {
  let stack: TappedProxy;
  let tap: UpstreamTap;
  let proxy: Listening;

  beforeAll(async () => {
    stack = await startTappedProxy(() => ({
      status: 201,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sid: randomUUID(), status: 'queued' }),
    }));
    ({ tap, proxy } = stack);
  });

  afterAll(async () => {
    await stack.close();
  });

  it('When a create comes in absolute form (POST http://host/path), then SignalWire gets the path and query only', async () => {
    const body = new URLSearchParams({ To: '+15557650000', From: '+15551234567', Body: 'x' });
    const res = await rawRequest(proxy.port, {
      method: 'POST',
      path: `http://sw-status.internal${COMPAT_PATH}?trace=1`,
      headers: { authorization: AUTH, 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
    expect(res.status).toBe(201);
    const forwarded = tap.requests.at(-1)!;
    expect(forwarded.path).toBe(`${COMPAT_PATH}?trace=1`);
    expect(forwarded.headers.host).toBe(`127.0.0.1:${tap.port}`);
    expect(formPairs(forwarded.body).map(([k]) => k)).toEqual([
      'To',
      'From',
      'Body',
      'StatusCallback',
    ]);
  });
});
