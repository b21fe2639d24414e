import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { signFormParams } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields, postCxml, postNative } from '../helpers/callbacks';
import {
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  TEST_TOKEN_SECRET,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { storedEventCount } from '../helpers/raw-http';

/**
 * The callback routes are one request handler, not an Express Router with a body parser
 * (src/callbacks/callbacks.routes.ts callbackEndpoint): these pin down that the paths mean what
 * Express made of them, and that the body is read within its limit, by the service's own code.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });
});
afterAll(() => t.close());

const eventsOf = (messageId: string) => storedEventCount(t.database.db, messageId);

function expectError(res: request.Response, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.body.error).toMatchObject({ code, request_id: expect.any(String) });
}

describe('paths', () => {
  test.each(['/callbacks/cxml/', '/CALLBACKS/CXML', '/Callbacks/Cxml/'])(
    'When a signed callback comes to %s, then it is the cXML route (case-insensitive, optional trailing slash) and stored',
    async (path) => {
      const fields = cxmlFields();
      await postCxml(t.publicApp, fields, { path }).expect(200);
      expect(await eventsOf(fields.MessageSid!)).toBe(1);
    },
  );

  test('When a signed native callback carries a query string, then the route still matches and it is stored', async () => {
    const fields = nativeFields();
    await postNative(t.publicApp, fields, { path: '/callbacks/native?source=test' }).expect(200);
    expect(await eventsOf(fields.id as string)).toBe(1);
  });

  test('When the token segment is percent-encoded, then it is decoded before it is verified', async () => {
    const { token } = mintCallbackToken([TEST_TOKEN_SECRET]);
    const encoded = [...token].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('');
    const fields = nativeFields();
    await request(t.publicApp)
      .post(`/callbacks/native/${encoded}`)
      .set('Content-Type', 'application/json')
      .send(JSON.stringify(fields))
      .expect(200);
    expect(await eventsOf(fields.id as string)).toBe(1);
  });

  test('When the token segment is not valid percent-encoding, then 400 malformed_path', async () => {
    const res = await request(t.publicApp)
      .post('/callbacks/native/%E0%A4%A')
      .set('Content-Type', 'application/json')
      .send('{}');
    expectError(res, 400, 'malformed_path');
  });

  test.each([
    ['PUT', '/callbacks/cxml'],
    ['DELETE', '/callbacks/native'],
    ['GET', '/callbacks/native'],
    ['POST', '/callbacks/cxml/a/b'],
    ['POST', '/callbacks/cxmlx'],
    ['POST', '/callbacks'],
  ])('When %s %s arrives, then 404 not_found', async (method, path) => {
    const res = await request(t.publicApp)[method.toLowerCase() as 'post'](path);
    expectError(res, 404, 'not_found');
  });

  test('When another method arrives on a token path, then its 404 names the path with the token masked, and a long path cut', async () => {
    const token = 'tok-do-not-echo-7f3a9c';
    const masked = await request(t.publicApp).put(`/callbacks/native/${token}`);
    expectError(masked, 404, 'not_found');
    expect(masked.text).not.toContain(token);
    expect(masked.body.error.message).toBe('No route for PUT /callbacks/native/[token]');

    const long = await request(t.publicApp).post(`/${'a'.repeat(10_000)}`);
    expectError(long, 404, 'not_found');
    expect(long.body.error.message.length).toBeLessThan(300);
  });

  test.each([
    ['/callbacks/cxml', 'POST, GET'],
    ['/callbacks/native/some-token', 'POST'],
  ])(
    'When OPTIONS %s arrives, then 200 with the methods it takes in Allow',
    async (path, allow) => {
      const res = await request(t.publicApp).options(path);
      expect(res.status).toBe(200);
      expect(res.headers['allow']).toBe(allow);
    },
  );
});

describe('the rate limit', () => {
  test('When a client is over its limit, then OPTIONS and a malformed token path on a callback route are refused with 429 too, before any other work', async () => {
    const limited = await createTestApp({ RATE_LIMIT_PUBLIC_PER_MINUTE: '2' });
    try {
      await request(limited.publicApp).options('/callbacks/cxml').expect(200);
      await request(limited.publicApp).options('/callbacks/native').expect(200);
      expectError(await request(limited.publicApp).options('/callbacks/cxml'), 429, 'rate_limited');
      expectError(
        await request(limited.publicApp).post('/callbacks/native/%E0%A4%A').send('{}'),
        429,
        'rate_limited',
      );
    } finally {
      await limited.close();
    }
  });
});

describe('the body', () => {
  test('When the body is gzip-compressed, then 415 unsupported_encoding and nothing is stored', async () => {
    const fields = cxmlFields();
    const pairs = Object.entries(fields);
    const res = await request(t.publicApp)
      .post('/callbacks/cxml')
      .set('Content-Type', 'application/x-www-form-urlencoded')
      .set('Content-Encoding', 'gzip')
      .set(
        'X-SignalWire-Signature',
        signFormParams(TEST_SIGNING_KEY, `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`, pairs),
      )
      .send(gzipSync(new URLSearchParams(pairs).toString()));
    expectError(res, 415, 'unsupported_encoding');
    expect(await eventsOf(fields.MessageSid!)).toBe(0);
  });

  test('When Content-Encoding is identity, then the callback is read as it is', async () => {
    const fields = cxmlFields();
    const pairs = Object.entries(fields);
    await request(t.publicApp)
      .post('/callbacks/cxml')
      .set('Content-Type', 'application/x-www-form-urlencoded')
      .set('Content-Encoding', 'identity')
      .set(
        'X-SignalWire-Signature',
        signFormParams(TEST_SIGNING_KEY, `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`, pairs),
      )
      .send(new URLSearchParams(pairs).toString())
      .expect(200);
    expect(await eventsOf(fields.MessageSid!)).toBe(1);
  });

  describe('on a real socket', () => {
    let server: http.Server;
    let port: number;
    beforeAll(async () => {
      server = http.createServer(t.publicApp);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    afterAll(() => new Promise((resolve) => server.close(resolve)));

    /** Writes `head`, then `chunks` one by one, and collects what comes back until close. */
    function exchange(head: string, chunks: string[], endAfterWrite = false): Promise<string> {
      return new Promise((resolve, reject) => {
        let text = '';
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.write(head);
          for (const chunk of chunks) socket.write(chunk);
          if (endAfterWrite) socket.end();
        });
        socket.on('data', (data: Buffer) => (text += data.toString()));
        socket.on('close', () => resolve(text));
        socket.on('error', reject);
        socket.setTimeout(10_000, () => socket.destroy(new Error('no answer')));
      });
    }

    test('When a chunked body grows past 64 KiB, then 413 payload_too_large, the connection closes and nothing is stored', async () => {
      const id = randomUUID();
      const chunk = `MessageSid=${id}&MessageStatus=delivered&Pad=${'x'.repeat(16 * 1024)}`;
      const chunked = Array.from(
        { length: 8 },
        () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`,
      );
      const answer = await exchange(
        'POST /callbacks/cxml HTTP/1.1\r\nHost: x\r\n' +
          'Content-Type: application/x-www-form-urlencoded\r\n' +
          'X-SignalWire-Signature: x\r\nTransfer-Encoding: chunked\r\n\r\n',
        chunked,
      );
      expect(answer).toMatch(/^HTTP\/1\.1 413/);
      expect(answer).toMatch(/Connection: close/i);
      expect(answer).toContain('"payload_too_large"');
      expect(await eventsOf(id)).toBe(0);
    });

    test('When the client sends less than its Content-Length and hangs up, then nothing is stored and the service answers the next callback', async () => {
      const fields = cxmlFields();
      const body = new URLSearchParams(fields).toString();
      await exchange(
        'POST /callbacks/cxml HTTP/1.1\r\nHost: x\r\n' +
          'Content-Type: application/x-www-form-urlencoded\r\n' +
          `X-SignalWire-Signature: x\r\nContent-Length: ${body.length + 100}\r\n\r\n`,
        [body],
        true,
      );
      expect(await eventsOf(fields.MessageSid!)).toBe(0);
      const next = cxmlFields();
      await postCxml(t.publicApp, next).expect(200);
      expect(await eventsOf(next.MessageSid!)).toBe(1);
    });
  });
});
