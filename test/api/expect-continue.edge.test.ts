import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createListener, listenerSettings } from '../../src/http/listener';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { signJsonBody } from '../../src/signalwire/signing';
import { nativeFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { CONTINUE, exchangeRaw, expectErrorShape, storedEventCount } from '../helpers/raw-http';
import type { RawAnswer } from '../helpers/raw-http';

/**
 * `Expect: 100-continue` on both listeners, through the service's own listener (createListener,
 * as main.ts serves them) on a real socket: the client sends its headers and holds the body
 * back until told to continue. A body the route refuses by its declared size must be answered
 * 413 at once, never invited first with 100 Continue; one within the limit is invited and
 * answered as usual.
 */

let t: TestApp;
let publicServer: Server;
let internalServer: Server;
beforeAll(async () => {
  t = await createTestApp({ RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' });
  publicServer = await serve(createListener(t.publicApp, listenerSettings(t.config)));
  internalServer = await serve(createListener(t.internalApp, listenerSettings(t.config)));
});
afterAll(async () => {
  for (const server of [publicServer, internalServer]) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  await t.close();
});

async function serve(server: Server): Promise<Server> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

const portOf = (server: Server) => (server.address() as AddressInfo).port;

/**
 * Writes the request's headers only, then reads what comes back until the service closes the
 * connection. With `body`, the body is written once (and only if) 100 Continue came first.
 */
const exchange = (server: Server, head: string, body?: string) =>
  exchangeRaw(portOf(server), head, body);

/** Nothing but the final answer came back: no 100 Continue before it. */
function expectNoContinue(answer: RawAnswer): void {
  expect(answer.raw).not.toContain('100 Continue');
  expect(answer.raw).toMatch(/^HTTP\/1\.1 [2-5]\d\d /);
}

const eventsOf = (messageId: string) => storedEventCount(t.database.db, messageId);

describe('public listener (callbacks, 64 KiB)', () => {
  const head = (length: number, signature: string) =>
    'POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\nConnection: close\r\n' +
    `Content-Type: application/json\r\nX-SignalWire-Signature: ${signature}\r\n` +
    `Expect: 100-continue\r\nContent-Length: ${length}\r\n\r\n`;

  test('When a callback declares a body over 64 KiB and expects 100-continue, then it is answered 413 in the error shape at once, without 100 Continue, and the connection is closed', async () => {
    const answer = await exchange(publicServer, head(64 * 1024 + 1, 'forged'));
    expectNoContinue(answer);
    expectErrorShape(answer, 413, 'payload_too_large');
    expect(answer.headers['connection']).toBe('close');
  });

  test('When a callback within 64 KiB expects 100-continue, then it is told to continue, and once its body follows it is stored', async () => {
    const id = randomUUID();
    const body = JSON.stringify(nativeFields({ id }));
    const signature = signJsonBody(
      TEST_SIGNING_KEY,
      `${TEST_PUBLIC_BASE_URL}/callbacks/native`,
      body,
    );
    const answer = await exchange(publicServer, head(Buffer.byteLength(body), signature), body);
    expect(answer.raw.startsWith(CONTINUE)).toBe(true);
    expect(answer.status).toBe(200);
    expect(await eventsOf(id)).toBe(1);
  });
});

describe('internal listener (send proxy, 256 KiB; the query API reads no body)', () => {
  const PROJECT = randomUUID();
  const AUTH = basicAuthHeader(PROJECT, 'PT-token');
  const head = (path: string, length: number, headers = '') =>
    `POST ${path} HTTP/1.1\r\nHost: sw-status.internal\r\nConnection: close\r\n${headers}` +
    `Expect: 100-continue\r\nContent-Length: ${length}\r\n\r\n`;
  const COMPAT_CREATE = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;

  test('When a create declares a body over 256 KiB and expects 100-continue, then it is answered 413 at once in the API’s own shape (DESIGN §5), without 100 Continue', async () => {
    const answer = await exchange(
      internalServer,
      head(
        COMPAT_CREATE,
        256 * 1024 + 1,
        `Authorization: ${AUTH}\r\nContent-Type: application/x-www-form-urlencoded\r\n`,
      ),
    );
    expectNoContinue(answer);
    expect(answer.status).toBe(413);
    expect(answer.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(answer.body)).toMatchObject({ status: 413, message: expect.any(String) });
    expect(answer.headers['connection']).toBe('close');
  });

  test('When a native create declares a body over 256 KiB and expects 100-continue, then it is answered 413 at once, without 100 Continue', async () => {
    const answer = await exchange(
      internalServer,
      head(
        '/api/messaging/messages',
        10 * 1024 * 1024,
        `Authorization: ${AUTH}\r\nContent-Type: application/json\r\n`,
      ),
    );
    expectNoContinue(answer);
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body)).toMatchObject({ errors: [expect.any(Object)] });
  });

  test('When a query API request with a large declared body expects 100-continue and is refused, then the refusal comes at once in the error shape, without 100 Continue', async () => {
    const answer = await exchange(
      internalServer,
      head('/v1/relays/1/retry', 10 * 1024 * 1024, 'Content-Type: application/json\r\n'),
    );
    expectNoContinue(answer);
    expectErrorShape(answer, 401, 'unauthorized');
  });

  test('When a create within 256 KiB expects 100-continue, then it is told to continue, and its body is read and judged as usual', async () => {
    // No `To`: the proxy's own validation answers from the body, without an upstream call.
    const body = 'From=%2B15551230000&Body=hello';
    const answer = await exchange(
      internalServer,
      head(
        COMPAT_CREATE,
        Buffer.byteLength(body),
        `Authorization: ${AUTH}\r\nContent-Type: application/x-www-form-urlencoded\r\n`,
      ),
      body,
    );
    expect(answer.raw.startsWith(CONTINUE)).toBe(true);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({
      status: 400,
      message: expect.stringMatching(/To/),
    });
  });
});

describe('a request without a body', () => {
  test('When a GET says Expect: 100-continue, then it is answered and its connection stays open for the next request', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      let received = '';
      const socket = net.connect(portOf(internalServer), '127.0.0.1', () =>
        socket.write(
          'GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n' +
            'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        ),
      );
      socket.on('data', (data: Buffer) => (received += data.toString('latin1')));
      socket.on('error', reject);
      socket.setTimeout(10_000, () => socket.destroy(new Error(`no close; got ${received}`)));
      socket.on('close', () => resolve(received));
    });
    expect(text.match(/HTTP\/1\.1 200 /g)).toHaveLength(2);
    expect(text).toMatch(/Connection: keep-alive/);
  });
});
