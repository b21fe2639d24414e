import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import request from 'supertest';
import { createListener, listenOn, listenerSettings } from '../../src/http/listener';
import { checkAnswer, openApiDocument } from '../helpers/openapi';
import { exchangeRaw } from '../helpers/raw-http';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Answers the service gives that its operations must declare (DESIGN §6: the document
 * describes every route). Every answer a test here gets through supertest is also checked
 * against the document by test/helpers/openapi-setup.ts.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** The statuses the document declares for GET `path`. */
function declaredFor(path: string): string[] {
  return Object.keys((openApiDocument().paths![path]!.get!.responses ?? {}) as object);
}

describe('conditional GET on the operations that declare no 304', () => {
  // Express's automatic ETag and its req.fresh answered 304 here, a status a generated client
  // has no branch for (openapi-fetch: neither data nor a typed error).
  test.each(['/openapi.json', '/docs', '/healthz', '/readyz', '/metrics'])(
    'When GET %s is read on the internal listener, then it carries no ETag to revalidate with',
    async (path) => {
      const res = await request(t.internalApp).get(path).expect(200);
      expect([path, res.headers['etag'], declaredFor(path)]).toEqual([
        path,
        undefined,
        expect.not.arrayContaining(['304']),
      ]);
    },
  );

  // `If-None-Match: *` is fresh for any answer (the `fresh` module Express asks), ETag or none.
  test.each([
    ['internal', '/openapi.json'],
    ['internal', '/docs'],
    ['internal', '/healthz'],
    ['internal', '/readyz'],
    ['internal', '/metrics'],
    ['public', '/healthz'],
    ['public', '/readyz'],
  ] as const)(
    'When GET %s %s carries If-None-Match: *, then it answers 200 with its body all the same',
    async (listener, path) => {
      const app = listener === 'internal' ? t.internalApp : t.publicApp;
      const plain = await request(app).get(path).expect(200);
      const res = await request(app).get(path).set('If-None-Match', '*');
      expect([listener, path, res.status, res.headers['etag']]).toEqual([
        listener,
        path,
        200,
        undefined,
      ]);
      expect(res.headers['content-type']).toBe(plain.headers['content-type']);
      expect(res.text.length).toBeGreaterThan(0);
    },
  );
});

describe('refusals the listener writes itself, on documented operations', () => {
  const servers: Server[] = [];
  afterAll(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
  async function listening(which: 'internal' | 'public'): Promise<number> {
    const server = createListener(
      which === 'internal' ? t.internalApp : t.publicApp,
      listenerSettings(t.config),
    );
    servers.push(server);
    await listenOn(server, 0, ['127.0.0.1']);
    return (server.address() as AddressInfo).port;
  }

  // src/http/listener.ts answers these before any route, in the error shape (DESIGN §2): each
  // operation's `default` declares them. (408 needs headersTimeout, 10 s, to pass: not here.)
  test.each([
    [
      417,
      'internal',
      'GET',
      '/v1/messages',
      `GET /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_API_TOKEN}\r\nExpect: 200-ok\r\nConnection: close\r\n\r\n`,
    ],
    [
      417,
      'public',
      'GET',
      '/healthz',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nConnection: close\r\n\r\n',
    ],
    [
      501,
      'public',
      'POST',
      '/callbacks/native',
      'POST /callbacks/native HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-SignalWire-Signature: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
    ],
    [
      501,
      'internal',
      'POST',
      '/api/messaging/messages',
      'POST /api/messaging/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
    ],
    [
      431,
      'internal',
      'GET',
      '/v1/events',
      `GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_API_TOKEN}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    ],
  ] as const)(
    'When the listener answers %s to the %s %s %s itself, then the document declares that answer',
    async (status, which, method, path, head) => {
      const port = await listening(which);
      const answer = await exchangeRaw(port, head);
      const problem = checkAnswer({
        listener: which,
        method,
        url: path,
        status: answer.status,
        headers: answer.headers,
        body: Buffer.from(answer.body, 'latin1'),
      });
      expect([answer.status, problem]).toEqual([status, null]);
    },
  );

  test('When the document is read, then every operation declares a default answer for the refusals it does not list', () => {
    const withoutDefault: string[] = [];
    for (const [path, item] of Object.entries(openApiDocument().paths ?? {})) {
      for (const [method, operation] of Object.entries(item as Record<string, unknown>)) {
        const { responses } = operation as { responses: Record<string, unknown> };
        if (responses['default'] === undefined) withoutDefault.push(`${method} ${path}`);
      }
    }
    expect(withoutDefault).toEqual([]);
  });
});
