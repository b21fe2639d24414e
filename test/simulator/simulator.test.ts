import type { AddressInfo } from 'node:net';
import { parse as parseQuery } from 'node:querystring';
import express from 'express';
import { RestClient } from '@signalwire/compatibility-api';
import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { signJsonBody } from '../../src/signalwire/signing';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { closeServer, listen } from './support';

/**
 * The simulator on a real port, driven by the official compatibility SDK and by plain fetch,
 * posting its callbacks to a real receiver on another port. Signatures are checked with the
 * SDK's own validator (scheme B) and the shared scheme-A signer.
 */

const PROJECT = 'b2c3d4e5-f6a7-4901-bcde-f12345678901';
const TOKEN = 'PTsimulatortesttoken';
const FROM = '+15551234567';
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const RFC_2822 =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$/;

interface Received {
  path: string;
  signature: string | undefined;
  contentType: string | undefined;
  rawBody: string;
  status: number;
}

interface Receiver {
  url: string;
  received: Received[];
  /** Status codes to answer the next requests on a path with, in order (then 200). */
  answers: Map<string, number[]>;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const answers = new Map<string, number[]>();
  const app = express();
  app.use(express.raw({ type: () => true }));
  app.post('/{*rest}', (req, res) => {
    const status = answers.get(req.path)?.shift() ?? 200;
    received.push({
      path: req.originalUrl,
      signature: req.get('x-signalwire-signature'),
      contentType: req.get('content-type'),
      rawBody: Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '',
      status,
    });
    res.status(status).end();
  });
  const server = await listen(app);
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, received, answers, close: () => closeServer(server) };
}

/** The official SDK pointed at the simulator over plain http (see the note in the report). */
function sdkClient(sim: RunningSimulator, projectId = PROJECT, token = TOKEN) {
  const client = RestClient(projectId, token, { signalwireSpaceUrl: new URL(sim.url).host });
  // RestClient hard-codes `https://${signalwireSpaceUrl}` as the base URL of its `api` domain;
  // the domain reads `baseUrl` on every request, so overriding it is the supported seam.
  (client.api as unknown as { baseUrl: string }).baseUrl = sim.url;
  return client;
}

function form(raw: string): Record<string, string> {
  return parseQuery(raw) as Record<string, string>;
}

let sim: RunningSimulator;
let receiver: Receiver;
let callbackSeq = 0;

/** A fresh callback URL per test, with a query string: the signature must cover it verbatim. */
function callbackUrl(name: string): { url: string; path: string } {
  callbackSeq += 1;
  const path = `/cb/${name}-${callbackSeq}`;
  return { url: `${receiver.url}${path}?tenant=acme&n=${callbackSeq}`, path };
}

function callbacksFor(path: string): Received[] {
  return receiver.received.filter((r) => r.path.startsWith(`${path}?`));
}

function compatStatuses(path: string): string[] {
  return callbacksFor(path).map((r) => form(r.rawBody)['MessageStatus'] ?? '?');
}

function nativeStatuses(path: string): string[] {
  return callbacksFor(path).map((r) => (JSON.parse(r.rawBody) as { status: string }).status);
}

beforeAll(async () => {
  receiver = await startReceiver();
  sim = await startSimulator({ stepDelayMs: 2, retryBackoffMs: 5, callbackTimeoutMs: 15_000 });
});

afterAll(async () => {
  await sim.close();
  await receiver.close();
});

describe('compatibility API through the official SDK', () => {
  it('When a message is created, then the 201 body is the seed Message object', async () => {
    const client = sdkClient(sim);
    const message = await client.messages.create({
      from: FROM,
      to: '+15557650000',
      body: 'Hello World!',
    });
    const stored = sim.messages.find((m) => m.id === message.sid);
    expect(stored).toBeDefined();

    // The SDK camel-cases fields; check the raw body through the debug view of the same message.
    const res = await fetch(
      `${sim.url}/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/${message.sid}.json`,
      { headers: { authorization: basicAuthHeader(PROJECT, TOKEN) } },
    );
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual([
      'account_sid',
      'api_version',
      'body',
      'num_segments',
      'num_media',
      'date_created',
      'date_sent',
      'date_updated',
      'direction',
      'error_code',
      'error_message',
      'from',
      'price',
      'price_unit',
      'sid',
      'status',
      'to',
      'messaging_service_sid',
      'uri',
      'subresource_uris',
    ]);
    expect(message.sid).toMatch(UUID_V4);
    expect(message.status).toBe('queued');
    expect(message.accountSid).toBe(PROJECT);
    expect(message.apiVersion).toBe('2010-04-01');
    expect(message.direction).toBe('outbound-api');
    expect(message.numSegments).toBe(1);
    expect(message.numMedia).toBe(0);
    expect(message.price).toBeNull();
    expect(message.priceUnit).toBe('USD');
    expect(message.errorCode).toBeNull();
    expect(message.dateSent).toBeNull();
    expect(message.uri).toBe(`/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/${message.sid}`);
    expect(message.subresourceUris).toEqual({ media: `${message.uri}/Media` });
    expect(body['date_created']).toMatch(RFC_2822);
    expect(body['date_updated']).toMatch(RFC_2822);
  });

  it('When a message to a default number has a StatusCallback, then signed callbacks arrive queued → sent → delivered', async () => {
    const cb = callbackUrl('cxml-delivered');
    const client = sdkClient(sim);
    const message = await client.messages.create({
      from: FROM,
      to: '+15557650001',
      body: 'Hello',
      statusCallback: cb.url,
    });
    await sim.waitForIdle();

    const callbacks = callbacksFor(cb.path);
    expect(compatStatuses(cb.path)).toEqual(['queued', 'sent', 'delivered']);
    for (const callback of callbacks) {
      const params = form(callback.rawBody);
      expect(callback.contentType).toBe('application/x-www-form-urlencoded');
      expect(
        RestClient.validateRequest(SIMULATOR_SIGNING_KEY, callback.signature ?? '', cb.url, params),
      ).toBe(true);
      expect(
        RestClient.validateRequest('PSK_wrong', callback.signature ?? '', cb.url, params),
      ).toBe(false);
      expect(params).toEqual({
        MessageSid: message.sid,
        MessageStatus: params['MessageStatus'],
        AccountSid: PROJECT,
        From: FROM,
        To: '+15557650001',
        Body: 'Hello',
        NumMedia: '0',
        NumSegments: '1',
        ApiVersion: '2010-04-01',
      });
    }
    const fetched = await client.messages(message.sid).fetch();
    expect(fetched.status).toBe('delivered');
    expect(fetched.dateSent).toBeInstanceOf(Date);
  });

  it('When the destination ends in 0003, then the message ends undelivered with ErrorCode 30003 on that callback only', async () => {
    const cb = callbackUrl('cxml-undelivered');
    await sdkClient(sim).messages.create({
      from: FROM,
      to: '+15557650003',
      body: 'x',
      statusCallback: cb.url,
    });
    await sim.waitForIdle();

    const params = callbacksFor(cb.path).map((r) => form(r.rawBody));
    expect(params.map((p) => [p['MessageStatus'], p['ErrorCode']])).toEqual([
      ['queued', undefined],
      ['sent', undefined],
      ['undelivered', '30003'],
    ]);
  });

  it('When the destination ends in 0004, then the message fails with ErrorCode 30008', async () => {
    const cb = callbackUrl('cxml-failed');
    const message = await sdkClient(sim).messages.create({
      from: FROM,
      to: '+15557650004',
      body: 'x',
      statusCallback: cb.url,
    });
    await sim.waitForIdle();

    const params = callbacksFor(cb.path).map((r) => form(r.rawBody));
    expect(params.map((p) => [p['MessageStatus'], p['ErrorCode']])).toEqual([
      ['queued', undefined],
      ['failed', '30008'],
    ]);
    const fetched = await sdkClient(sim).messages(message.sid).fetch();
    expect([fetched.status, fetched.errorCode, fetched.errorMessage]).toEqual([
      'failed',
      30008,
      'Unknown error',
    ]);
  });

  it('When the destination ends in 0005, then every callback is sent twice', async () => {
    const cb = callbackUrl('cxml-duplicates');
    await sdkClient(sim).messages.create({
      from: FROM,
      to: '+15557650005',
      body: 'x',
      statusCallback: cb.url,
    });
    await sim.waitForIdle();

    expect(compatStatuses(cb.path)).toEqual([
      'queued',
      'queued',
      'sent',
      'sent',
      'delivered',
      'delivered',
    ]);
    const [first, second] = callbacksFor(cb.path);
    expect(first?.rawBody).toBe(second?.rawBody);
    expect(first?.signature).toBe(second?.signature);
  });

  it('When the destination ends in 0006, then delivered arrives before sent', async () => {
    const cb = callbackUrl('cxml-out-of-order');
    const message = await sdkClient(sim).messages.create({
      from: FROM,
      to: '+15557650006',
      body: 'x',
      statusCallback: cb.url,
    });
    await sim.waitForIdle();

    expect(compatStatuses(cb.path)).toEqual(['queued', 'delivered', 'sent']);
    // The provider's own view never moves backwards.
    expect(sim.messages.find((m) => m.id === message.sid)?.status).toBe('delivered');
  });

  it('When media is attached, then it is an MMS whose callbacks stop at sent', async () => {
    const cb = callbackUrl('cxml-mms');
    const message = await sdkClient(sim).messages.create({
      from: FROM,
      to: '+15557650010',
      mediaUrl: ['https://example.com/a.png', 'https://example.com/b.png'],
      statusCallback: cb.url,
    });
    await sim.waitForIdle();

    expect(message.numMedia).toBe(2);
    expect(message.body).toBe('');
    expect(compatStatuses(cb.path)).toEqual(['queued', 'sent']);
    expect(form(callbacksFor(cb.path)[0]?.rawBody ?? '')['NumMedia']).toBe('2');
  });

  it('When the SDK sends an invalid To, then it rejects with 400 and code 21211 and nothing is queued', async () => {
    const before = sim.messages.length;
    await expect(
      sdkClient(sim).messages.create({ from: FROM, to: '5557650000', body: 'x' }),
    ).rejects.toMatchObject({ status: 400, code: 21211 });
    await expect(
      sdkClient(sim).messages.create({ from: FROM, to: '+15557650000' }),
    ).rejects.toMatchObject({
      status: 400,
      code: 21619,
    });
    expect(sim.messages.length).toBe(before);
  });
});

describe('compatibility API over plain HTTP', () => {
  const auth = basicAuthHeader(PROJECT, TOKEN);

  it('When a form with repeated MediaUrl and SendAsMms is posted to the documented path, then it is accepted', async () => {
    const body = new URLSearchParams([
      ['To', '+15557650000'],
      ['From', FROM],
      ['Body', 'hi'],
      ['MediaUrl', 'https://example.com/1.png'],
      ['MediaUrl', 'https://example.com/2.png'],
    ]);
    const res = await fetch(`${sim.url}/api/laml/2010-04-01/Accounts/${PROJECT}/Messages`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ num_media: 2, status: 'queued', body: 'hi' });
  });

  it('When JSON is posted to the .json path, then it is accepted like a form', async () => {
    const res = await fetch(`${sim.url}/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        To: '+15557650000',
        MessagingServiceSid: '0a059168-ead0-41af-9d1f-343dae832527',
        Body: 'hi',
        SendAsMms: true,
      }),
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({
      messaging_service_sid: '0a059168-ead0-41af-9d1f-343dae832527',
      from: expect.stringMatching(/^\+\d+$/),
    });
  });

  it('When no credentials are sent, then the answer is 401 in the compatibility shape', async () => {
    const res = await fetch(`${sim.url}/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`, {
      method: 'POST',
      body: new URLSearchParams({ To: '+15557650000', From: FROM, Body: 'x' }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic/);
    expect(await res.json()).toEqual({
      code: 20003,
      message: expect.any(String),
      more_info: expect.stringMatching(/^https:\/\//),
      status: 401,
    });
  });

  it('When the credentials belong to another project than the AccountSid, then the answer is 401 code 20003', async () => {
    const res = await fetch(`${sim.url}/2010-04-01/Accounts/${PROJECT}/Messages.json`, {
      method: 'POST',
      headers: {
        authorization: basicAuthHeader('another-project', TOKEN),
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ To: '+15557650000', From: FROM, Body: 'x' }),
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: 20003, status: 401 });
  });

  it('When the JSON body is malformed, then the answer is 400 in the compatibility shape', async () => {
    const res = await fetch(`${sim.url}/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: '{"To":',
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 10000, status: 400 });
  });
});

describe('native API', () => {
  const auth = basicAuthHeader(PROJECT, TOKEN);

  async function send(body: unknown, authorization: string | null = auth): Promise<Response> {
    return fetch(`${sim.url}/api/messaging/messages`, {
      method: 'POST',
      headers: {
        ...(authorization ? { authorization } : {}),
        'content-type': 'application/json',
      },
      body: JSON.stringify(body),
    });
  }

  it('When a message is created, then the 201 body is the seed 003 object', async () => {
    const res = await send({ to: '+15557650000', from: FROM, body: 'Your order has shipped!' });
    expect(res.status).toBe(201);
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual([
      'id',
      'from',
      'to',
      'body',
      'status',
      'direction',
      'kind',
      'media',
      'number_of_segments',
      'error_code',
      'error_message',
      'created_at',
      'project_id',
      'status_callback_url',
      'message_uri',
    ]);
    expect(body).toMatchObject({
      from: FROM,
      to: '+15557650000',
      status: 'queued',
      direction: 'outbound',
      kind: 'sms',
      media: [],
      number_of_segments: 1,
      error_code: null,
      error_message: null,
      project_id: PROJECT,
      status_callback_url: null,
    });
    expect(body['id']).toMatch(UUID_V4);
    expect(body['created_at']).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(body['message_uri']).toBe(`/api/messaging/logs/${String(body['id'])}`);
  });

  it('When a message has a status_callback, then scheme-A signed callbacks arrive queued → initiated → sent → delivered', async () => {
    const cb = callbackUrl('native-delivered');
    const res = await send({
      to: '+15557650000',
      from: FROM,
      body: 'Hello World!',
      status_callback: cb.url,
      custom_variables: { order_id: '12345' },
    });
    const created = (await res.json()) as { id: string; status_callback_url: string };
    expect(created.status_callback_url).toBe(cb.url);
    await sim.waitForIdle();

    expect(nativeStatuses(cb.path)).toEqual(['queued', 'initiated', 'sent', 'delivered']);
    for (const callback of callbacksFor(cb.path)) {
      expect(callback.contentType).toBe('application/json');
      expect(callback.signature).toBe(
        signJsonBody(SIMULATOR_SIGNING_KEY, cb.url, callback.rawBody),
      );
      const payload = JSON.parse(callback.rawBody) as Record<string, unknown>;
      expect(payload).toEqual({
        id: created.id,
        project_id: PROJECT,
        status: payload['status'],
        to: '+15557650000',
        from: FROM,
        body: 'Hello World!',
        number_of_segments: 1,
        timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/),
        error_code: null,
        error_message: null,
        custom_variables: { order_id: '12345' },
      });
    }
  });

  it('When the destination ends in 0003, then the last callback is undelivered with a native error code', async () => {
    const cb = callbackUrl('native-undelivered');
    await send({ to: '+15557650003', from: FROM, body: 'x', status_callback: cb.url });
    await sim.waitForIdle();

    const payloads = callbacksFor(cb.path).map(
      (r) => JSON.parse(r.rawBody) as Record<string, unknown>,
    );
    expect(payloads.map((p) => p['status'])).toEqual([
      'queued',
      'initiated',
      'sent',
      'undelivered',
    ]);
    expect(payloads.at(-1)).toMatchObject({
      error_code: 'unreachable_destination_handset',
      error_message: 'Unreachable destination handset',
    });
  });

  it('When send_as_mms is set, then the message is an MMS whose callbacks stop at sent', async () => {
    const cb = callbackUrl('native-mms');
    const res = await send({
      to: '+15557650000',
      from: FROM,
      body: 'x',
      send_as_mms: true,
      status_callback: cb.url,
    });
    expect(await res.json()).toMatchObject({ kind: 'mms', media: [] });
    await sim.waitForIdle();
    expect(nativeStatuses(cb.path)).toEqual(['queued', 'initiated', 'sent']);
  });

  it('When the request breaks several rules, then all of them come back in one 422', async () => {
    const res = await send({ to: 'nope', media: ['ftp://example.com/a.png'] });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { errors: Array<{ code: string; attribute: string }> };
    expect(body.errors.map((e) => [e.code, e.attribute])).toEqual([
      ['invalid_parameter', 'to'],
      ['missing_required_parameter', 'from'],
      ['invalid_parameter', 'media'],
    ]);
  });

  it('When the JSON body is null, a string or an array, then each is the same 422 "must be a JSON object", not a parse error', async () => {
    for (const body of [null, 'x', 7, []]) {
      const res = await send(body);
      expect([body, res.status]).toEqual([body, 422]);
      expect(await res.json()).toEqual({
        errors: [
          expect.objectContaining({
            type: 'validation_error',
            message: 'The request body must be a JSON object.',
            attribute: null,
          }) as unknown,
        ],
      });
    }
  });

  it('When no credentials are sent, then the answer is 401 in the native errors shape', async () => {
    const res = await send({ to: '+15557650000', from: FROM, body: 'x' }, null);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({
      errors: [
        {
          type: 'authentication_error',
          code: 'unauthorized',
          message: 'Unauthorized',
          attribute: null,
          url: 'https://developer.signalwire.com/rest/overview/error-codes/#unauthorized',
        },
      ],
    });
  });
});

describe('callback delivery', () => {
  it('When the receiver answers 500 once, then the callback is retried and delivered on the second attempt', async () => {
    const cb = callbackUrl('retry-once');
    receiver.answers.set(cb.path, [500]);
    const res = await fetch(`${sim.url}/api/messaging/messages`, {
      method: 'POST',
      headers: {
        authorization: basicAuthHeader(PROJECT, TOKEN),
        'content-type': 'application/json',
      },
      body: JSON.stringify({ to: '+15557650007', from: FROM, body: 'x', status_callback: cb.url }),
    });
    const { id } = (await res.json()) as { id: string };
    await sim.waitForIdle();

    // 0007 = no receipt: queued, initiated, sent; the first queued attempt got a 500.
    expect(callbacksFor(cb.path).map((r) => r.status)).toEqual([500, 200, 200, 200]);
    const deliveries = sim.deliveries.filter((d) => d.messageId === id);
    expect(deliveries.map((d) => [d.status, d.attempts.length, d.outcome])).toEqual([
      ['queued', 2, 'delivered'],
      ['initiated', 1, 'delivered'],
      ['sent', 1, 'delivered'],
    ]);
    expect(deliveries[0]?.attempts.map((a) => a.statusCode)).toEqual([500, 200]);
  });

  it('When the receiver keeps failing, then each callback is tried 3 times and dropped', async () => {
    const cb = callbackUrl('always-503');
    receiver.answers.set(
      cb.path,
      Array.from({ length: 20 }, () => 503),
    );
    const message = await sdkClient(sim).messages.create({
      from: FROM,
      to: '+15557650004',
      body: 'x',
      statusCallback: cb.url,
    });
    await sim.waitForIdle();

    expect(callbacksFor(cb.path)).toHaveLength(6);
    const deliveries = sim.deliveries.filter((d) => d.messageId === message.sid);
    expect(deliveries.map((d) => [d.status, d.attempts.length, d.outcome])).toEqual([
      ['queued', 3, 'dropped'],
      ['failed', 3, 'dropped'],
    ]);
  });

  it('When the callback URL is unreachable, then the attempts record the network error and the callback is dropped', async () => {
    const closed = await listen(express());
    const { port } = closed.address() as AddressInfo;
    await closeServer(closed);

    const message = await sdkClient(sim).messages.create({
      from: FROM,
      to: '+15557650004',
      body: 'x',
      statusCallback: `http://127.0.0.1:${port}/cb`,
    });
    await sim.waitForIdle();

    const deliveries = sim.deliveries.filter((d) => d.messageId === message.sid);
    expect(deliveries).toHaveLength(2);
    for (const d of deliveries) {
      expect(d.outcome).toBe('dropped');
      expect(d.attempts).toHaveLength(3);
      expect(d.attempts.every((a) => a.statusCode === null && a.error !== null)).toBe(true);
    }
  });

  it('When the debug route is read, then it lists the messages and their deliveries', async () => {
    const res = await fetch(`${sim.url}/__simulator/messages`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { messages: unknown[]; deliveries: unknown[] };
    expect(body.messages.length).toBe(sim.messages.length);
    expect(body.deliveries.length).toBe(sim.deliveries.length);
  });
});

describe('fixed credentials', () => {
  let strict: RunningSimulator;

  beforeAll(async () => {
    strict = await startSimulator({
      stepDelayMs: 0,
      credentials: { projectId: PROJECT, token: TOKEN },
    });
  });

  afterAll(async () => {
    await strict.close();
  });

  it('When credentials are configured, then only that project and token are accepted', async () => {
    await expect(
      sdkClient(strict, PROJECT, 'wrong-token').messages.create({
        from: FROM,
        to: '+15557650000',
        body: 'x',
      }),
    ).rejects.toMatchObject({ status: 401, code: 20003 });
    const message = await sdkClient(strict).messages.create({
      from: FROM,
      to: '+15557650000',
      body: 'x',
    });
    expect(message.status).toBe('queued');
  });
});
