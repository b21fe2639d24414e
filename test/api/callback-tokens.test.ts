import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { createLogger } from '../../src/logger';
import { createPublicApp } from '../../src/app';
import { recordEvents } from '../../src/messages/record-events';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { signJsonBody } from '../../src/signalwire/signing';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { statusEvent } from '../factories';
import { cxmlFields, nativeFields, postCxml } from '../helpers/callbacks';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  TEST_TOKEN_SECRET,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { startUpstreamTap } from '../proxy/support';
import type { UpstreamTap } from '../proxy/support';

/**
 * DESIGN §2 "A token authenticates its own send only", through HTTP: issue 9 item 3 found any
 * valid token authenticating callbacks for messages sent outside the proxy, the check skipped
 * when the lookup failed, check and write racing, and tokens that never expired.
 */

const DAY = 86_400_000;
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });
});
afterAll(() => t.close());

function postWithToken(token: string, fields: Record<string, unknown>) {
  return request(t.publicApp).post(`/callbacks/native/${token}`).send(fields);
}

async function getMessage(id: string) {
  return request(t.internalApp).get(`/v1/messages/${id}`).auth(TEST_API_TOKEN, { type: 'bearer' });
}

async function historyLength(id: string): Promise<number> {
  const res = await getMessage(id);
  return res.status === 404 ? 0 : (res.body.history as unknown[]).length;
}

/** A token in the format minted before this release: `ref.mac`, no mint time. */
function legacyToken(ref = randomBytes(12).toString('base64url')) {
  const mac = createHmac('sha256', TEST_TOKEN_SECRET).update(ref).digest('base64url');
  return { token: `${ref}.${mac}`, ref };
}

function expectRefused(res: request.Response, code: string): void {
  expect(res.status).toBe(403);
  expect(res.body.error).toMatchObject({ code, request_id: expect.any(String) });
  expect(JSON.stringify(res.body)).not.toMatch(/[A-Za-z0-9_-]{16}\.[0-9a-z]+\.[A-Za-z0-9_-]{43}/);
}

describe('a token binds an unknown message to its send', () => {
  test('When a valid token names a message never seen, then it is accepted and the message is bound to the token’s ref', async () => {
    const { token, ref } = mintCallbackToken([TEST_TOKEN_SECRET]);
    const id = randomUUID();
    await postWithToken(token, nativeFields({ id, status: 'sent' })).expect(200);
    expect((await getMessage(id)).body).toMatchObject({ ref, sent_via_proxy: false });
    await postWithToken(token, nativeFields({ id, status: 'delivered' })).expect(200);
    expect(await historyLength(id)).toBe(2);
  });

  test('When a token of another send names a bound message, then 403 token_mismatch and nothing is stored', async () => {
    const first = mintCallbackToken([TEST_TOKEN_SECRET]);
    const other = mintCallbackToken([TEST_TOKEN_SECRET]);
    const id = randomUUID();
    await postWithToken(first.token, nativeFields({ id, status: 'sent' })).expect(200);
    expectRefused(
      await postWithToken(other.token, nativeFields({ id, status: 'failed', error_code: '30008' })),
      'token_mismatch',
    );
    expect((await getMessage(id)).body).toMatchObject({ status: 'sent', ref: first.ref });
    expect(await historyLength(id)).toBe(1);
  });

  test('When a token names a message that exists but was never sent through the proxy, then 403 (the issue: any token wrote to it)', async () => {
    const fields = cxmlFields({ MessageStatus: 'sent' });
    await postCxml(t.publicApp, fields).expect(200); // signed, no token: ref stays null
    const { token } = mintCallbackToken([TEST_TOKEN_SECRET]);
    const res = await request(t.publicApp)
      .post(`/callbacks/cxml/${token}`)
      .type('form')
      .send({ ...fields, MessageStatus: 'undelivered', ErrorCode: '30003' });
    expectRefused(res, 'token_mismatch');
    expect((await getMessage(fields.MessageSid!)).body).toMatchObject({
      status: 'sent',
      ref: null,
    });
  });

  test('When a refused callback is the same status as a stored one (a duplicate), then it is refused too, not acknowledged', async () => {
    const owner = mintCallbackToken([TEST_TOKEN_SECRET]);
    const other = mintCallbackToken([TEST_TOKEN_SECRET]);
    const fields = nativeFields({ status: 'delivered' });
    await postWithToken(owner.token, fields).expect(200);
    expectRefused(await postWithToken(other.token, fields), 'token_mismatch');
    await postWithToken(owner.token, fields).expect(200); // the owner's duplicate still is one
  });

  test('When callbacks of two sends race for one unknown message, then exactly one binds it and the other is refused', async () => {
    for (let round = 0; round < 5; round++) {
      const id = randomUUID();
      const tokens = Array.from({ length: 4 }, () => mintCallbackToken([TEST_TOKEN_SECRET]));
      const answers = await Promise.all(
        tokens.map(({ token }, index) =>
          postWithToken(
            token,
            nativeFields({ id, status: 'sent', timestamp: `2026-11-01T10:00:0${index}Z` }),
          ),
        ),
      );
      const winners = answers.flatMap((res, index) => (res.status === 200 ? [tokens[index]!] : []));
      expect(winners).toHaveLength(1);
      expect(answers.filter((res) => res.status === 403)).toHaveLength(3);
      expect((await getMessage(id)).body.ref).toBe(winners[0]!.ref);
      expect(await historyLength(id)).toBe(1);
    }
  });
});

describe('tokens minted by the proxy', () => {
  const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
  let sim: RunningSimulator;
  let tap: UpstreamTap;
  let proxied: TestApp;

  beforeAll(async () => {
    sim = await startSimulator({ stepDelayMs: 3_600_000 });
    tap = await startUpstreamTap({ forwardTo: sim.url });
    proxied = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url });
  });
  afterAll(async () => {
    await proxied.close();
    await tap.close();
    await sim.close();
  });

  async function sendThroughProxy(): Promise<{ id: string; token: string }> {
    const res = await request(proxied.internalApp)
      .post('/api/messaging/messages')
      .set('Authorization', basicAuthHeader(PROJECT, 'PTtoken'))
      .send({ to: '+15551234567', from: '+15559876543', body: 'hi' });
    expect(res.status).toBe(201);
    const forwarded = JSON.parse(tap.requests.at(-1)!.body) as { status_callback: string };
    return {
      id: (res.body as { id: string }).id,
      token: forwarded.status_callback.split('/').pop()!,
    };
  }

  test('When the send’s own token calls back, then it is accepted; another send’s token is refused', async () => {
    const a = await sendThroughProxy();
    const b = await sendThroughProxy();
    await request(proxied.publicApp)
      .post(`/callbacks/native/${a.token}`)
      .send(nativeFields({ id: a.id, project_id: PROJECT, status: 'delivered' }))
      .expect(200);
    const res = await request(proxied.publicApp)
      .post(`/callbacks/native/${b.token}`)
      .send(nativeFields({ id: a.id, project_id: PROJECT, status: 'failed' }));
    expectRefused(res, 'token_mismatch');
  });
});

describe('token expiry (CALLBACK_TOKEN_TTL_DAYS)', () => {
  test('When a token is older than the TTL, then 403 token_expired and nothing is stored', async () => {
    const { token } = mintCallbackToken([TEST_TOKEN_SECRET], new Date(Date.now() - 31 * DAY));
    const fields = nativeFields();
    expectRefused(await postWithToken(token, fields), 'token_expired');
    expect(await historyLength(fields.id as string)).toBe(0);
  });

  test('When a token is younger than the TTL, then it is accepted', async () => {
    const { token } = mintCallbackToken([TEST_TOKEN_SECRET], new Date(Date.now() - 29 * DAY));
    await postWithToken(token, nativeFields()).expect(200);
  });

  test('When the TTL is configured shorter, then it applies', async () => {
    const short = await createTestApp({ CALLBACK_TOKEN_TTL_DAYS: '1' });
    try {
      const { token } = mintCallbackToken([TEST_TOKEN_SECRET], new Date(Date.now() - 2 * DAY));
      const res = await request(short.publicApp)
        .post(`/callbacks/native/${token}`)
        .send(nativeFields());
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('token_expired');
    } finally {
      await short.close();
    }
  });

  test('When an expired token path carries a valid signature, then the signature authenticates it', async () => {
    const { token } = mintCallbackToken([TEST_TOKEN_SECRET], new Date(Date.now() - 40 * DAY));
    const path = `/callbacks/native/${token}`;
    const body = JSON.stringify(nativeFields());
    await request(t.publicApp)
      .post(path)
      .set('Content-Type', 'application/json')
      .set(
        'X-SignalWire-Signature',
        signJsonBody(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, body),
      )
      .send(body)
      .expect(200);
  });
});

describe('tokens minted before this release (no mint time)', () => {
  test('When a legacy token names a message bound to its ref, then it is accepted', async () => {
    const legacy = legacyToken();
    const id = randomUUID();
    // Sent through the proxy of the previous release, which bound it to the legacy ref.
    await recordEvents(t.database.db, [
      statusEvent('queued', {
        messageId: id,
        api: 'native',
        source: 'proxy',
        send: { ref: legacy.ref, kind: 'sms', clientStatusCallback: null, body: null },
      }),
    ]);
    await postWithToken(legacy.token, nativeFields({ id, status: 'delivered' })).expect(200);
    expect((await getMessage(id)).body.status).toBe('delivered');
  });

  test('When a legacy token names an unknown message, then 403: it may never bind one', async () => {
    const { token } = legacyToken();
    const fields = nativeFields();
    expectRefused(await postWithToken(token, fields), 'token_mismatch');
    expect(await historyLength(fields.id as string)).toBe(0);
  });

  test('When a legacy token names a message bound to another send, then 403', async () => {
    const { token: owner } = mintCallbackToken([TEST_TOKEN_SECRET]);
    const id = randomUUID();
    await postWithToken(owner, nativeFields({ id, status: 'sent' })).expect(200);
    expectRefused(
      await postWithToken(legacyToken().token, nativeFields({ id, status: 'failed' })),
      'token_mismatch',
    );
  });
});

describe('a token never leaves the service', () => {
  test('When callbacks are accepted and refused, then no log line holds the token', async () => {
    const lines: string[] = [];
    const logger = createLogger('trace', { write: (line: string) => void lines.push(line) });
    const app = createPublicApp({ ...t.deps, logger });
    const owner = mintCallbackToken([TEST_TOKEN_SECRET]);
    const other = mintCallbackToken([TEST_TOKEN_SECRET]);
    const expired = mintCallbackToken([TEST_TOKEN_SECRET], new Date(Date.now() - 90 * DAY));
    const id = randomUUID();
    await request(app)
      .post(`/callbacks/native/${owner.token}`)
      .send(nativeFields({ id }))
      .expect(200);
    await request(app)
      .post(`/callbacks/native/${other.token}`)
      .send(nativeFields({ id }))
      .expect(403);
    await request(app).post(`/callbacks/native/${expired.token}`).send(nativeFields()).expect(403);
    expect(lines.length).toBeGreaterThan(3);
    const logged = lines.join('\n');
    for (const { token } of [owner, other, expired]) {
      expect(logged).not.toContain(token);
      expect(logged).not.toContain(token.split('.').pop()!);
    }
    // The stored payload holds no token either.
    const rows = await t.database.db
      .selectFrom('status_events')
      .select('raw')
      .where('message_id', '=', id)
      .execute();
    expect(JSON.stringify(rows)).not.toContain(owner.token);
  });
});
