import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createFastServer } from '../../src/http/fast-server';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields } from '../helpers/callbacks';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * The fast server must be invisible: the same apps behind a plain http.createServer and
 * behind createFastServer answer every request byte for byte alike (apart from what is
 * meant to differ per response: Date and the rate-limit counter). The API suite also runs
 * whole through it (api-through-production-stack.test.ts).
 */

interface Exchange {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Send the body chunked (no Content-Length). */
  chunked?: boolean;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

const VOLATILE_HEADERS = ['date', 'ratelimit', 'ratelimit-policy'];

function exchange(port: number, spec: Exchange): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: spec.method, path: spec.path, headers: spec.headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const headers = { ...res.headers };
          for (const name of VOLATILE_HEADERS) delete headers[name];
          resolve({ status: res.statusCode!, headers, body: Buffer.concat(chunks).toString() });
        });
      },
    );
    req.on('error', reject);
    if (spec.chunked && spec.body !== undefined) {
      const body = Buffer.from(spec.body);
      req.write(body.subarray(0, 10));
      req.end(body.subarray(10));
    } else {
      req.end(spec.body);
    }
  });
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function signedForm(
  path: string,
  fields: Record<string, string>,
  extra: Record<string, string> = {},
): Exchange {
  return {
    method: 'POST',
    path,
    headers: {
      'Content-Type': 'application/x-www-form-urlencoded',
      'X-SignalWire-Signature': signFormParams(
        TEST_SIGNING_KEY,
        TEST_PUBLIC_BASE_URL + path,
        Object.entries(fields),
      ),
      ...extra,
    },
    body: new URLSearchParams(fields).toString(),
  };
}

function signedJson(path: string, fields: Record<string, unknown>): Exchange {
  return signedRaw(path, JSON.stringify(fields));
}

/** A JSON callback whose signature covers `body` as given, parseable or not. */
function signedRaw(path: string, body: string): Exchange {
  return {
    method: 'POST',
    path,
    headers: {
      'Content-Type': 'application/json',
      'X-SignalWire-Signature': signJsonBody(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + path, body),
    },
    body,
  };
}

describe('createFastServer', () => {
  let t: TestApp;
  const ports = { plain: { public: 0, internal: 0 }, fast: { public: 0, internal: 0 } };
  const servers: http.Server[] = [];

  beforeAll(async () => {
    t = await createTestApp();
    const start = async (server: http.Server) => {
      servers.push(server);
      return listen(server);
    };
    ports.plain.public = await start(http.createServer(t.publicApp));
    ports.plain.internal = await start(http.createServer(t.internalApp));
    ports.fast.public = await start(createFastServer(t.publicApp));
    ports.fast.internal = await start(createFastServer(t.internalApp));
  });
  afterAll(async () => {
    await Promise.all(servers.map(close));
    await t.close();
  });

  /** The same request to both; the plain server first, so a repeated callback is a duplicate there. */
  async function both(listener: 'public' | 'internal', spec: Exchange): Promise<[Answer, Answer]> {
    const requestId = randomUUID();
    const withId = { ...spec, headers: { ...spec.headers, 'X-Request-Id': requestId } };
    const plain = await exchange(ports.plain[listener], withId);
    const fast = await exchange(ports.fast[listener], withId);
    return [plain, fast];
  }

  const cxml = cxmlFields();
  const native = nativeFields();
  const signedGetQuery = new URLSearchParams(cxmlFields({ MessageStatus: 'sent' })).toString();
  const publicCases: Array<[string, number, Exchange]> = [
    ['a signed form callback', 200, signedForm('/callbacks/cxml', cxml)],
    ['a signed JSON callback', 200, signedJson('/callbacks/native', native)],
    [
      'a chunked signed form callback',
      200,
      { ...signedForm('/callbacks/cxml', cxmlFields()), chunked: true },
    ],
    [
      'a signed GET callback',
      200,
      {
        method: 'GET',
        path: `/callbacks/cxml?${signedGetQuery}`,
        headers: {
          'X-SignalWire-Signature': signFormParams(
            TEST_SIGNING_KEY,
            `${TEST_PUBLIC_BASE_URL}/callbacks/cxml?${signedGetQuery}`,
            [],
          ),
        },
      },
    ],
    [
      'a bad signature',
      403,
      signedForm('/callbacks/cxml', cxmlFields(), { 'X-SignalWire-Signature': 'bm9wZQ==' }),
    ],
    [
      'no signature',
      401,
      {
        method: 'POST',
        path: '/callbacks/cxml',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: 'a=1',
      },
    ],
    [
      'an unsupported content type',
      415,
      {
        method: 'POST',
        path: '/callbacks/native',
        headers: { 'Content-Type': 'text/plain' },
        body: 'hi',
      },
    ],
    [
      'a body over 64 KiB',
      413,
      {
        method: 'POST',
        path: '/callbacks/native',
        headers: { 'Content-Type': 'application/json' },
        body: Buffer.alloc(70_000, 32),
      },
    ],
    ['malformed JSON', 400, signedRaw('/callbacks/native', '{"id":')],
    ['a missing field', 400, signedJson('/callbacks/native', { status: 'sent' })],
    ['liveness', 200, { method: 'GET', path: '/healthz' }],
    ['readiness', 200, { method: 'GET', path: '/readyz' }],
    ['HEAD of liveness', 200, { method: 'HEAD', path: '/healthz' }],
    ['an unknown route', 404, { method: 'GET', path: '/nope?x=1' }],
    ['OPTIONS of a callback route', 200, { method: 'OPTIONS', path: '/callbacks/cxml' }],
  ];

  test.each(publicCases)(
    'When the public listener gets %s, then both servers answer %d alike',
    async (_what, status, spec) => {
      const [plain, fast] = await both('public', spec);
      expect(plain.status).toBe(status);
      expect(fast).toEqual(plain);
    },
  );

  test('When the internal listener is queried, then both servers answer alike', async () => {
    const auth = { Authorization: `Bearer ${TEST_API_TOKEN}` };
    const cases: Array<[number, Exchange]> = [
      [200, { method: 'GET', path: `/v1/messages/${cxml.MessageSid}`, headers: auth }],
      [404, { method: 'GET', path: `/v1/messages/${randomUUID()}`, headers: auth }],
      [200, { method: 'GET', path: '/v1/messages?status=delivered&limit=2', headers: auth }],
      [400, { method: 'GET', path: '/v1/messages?limit=0', headers: auth }],
      [401, { method: 'GET', path: '/v1/messages' }],
      [200, { method: 'GET', path: '/readyz' }],
    ];
    for (const [status, spec] of cases) {
      const [plain, fast] = await both('internal', spec);
      expect({ path: spec.path, status: plain.status }).toEqual({ path: spec.path, status });
      expect({ path: spec.path, ...fast }).toEqual({ path: spec.path, ...plain });
    }
  });

  test('When the fast server answers the first callback, then it is stored once and the second copy is a duplicate', async () => {
    const fields = cxmlFields();
    const first = await exchange(ports.fast.public, signedForm('/callbacks/cxml', fields));
    const again = await exchange(ports.plain.public, signedForm('/callbacks/cxml', fields));
    expect([first.status, first.body]).toEqual([200, '<Response/>']);
    expect([again.status, again.body]).toEqual([200, '<Response/>']);
    const rows = await t.database.db
      .selectFrom('status_events')
      .select('seq')
      .where('message_id', '=', fields.MessageSid!)
      .execute();
    expect(rows).toHaveLength(1);
  });
});

describe('the prototypes', () => {
  test('When a request reaches a handler through the fast server, then req and res were born with the app prototypes and behave as Express objects', async () => {
    const app = express();
    const seen: unknown[] = [];
    type Handle = (req: object, res: object, next?: unknown) => void;
    const internals = app as unknown as { handle: Handle };
    const handle = internals.handle.bind(app);
    internals.handle = (req, res, next) => {
      seen.push(
        Object.getPrototypeOf(req) === app.request,
        Object.getPrototypeOf(res) === app.response,
      );
      handle(req, res, next);
    };
    app.use(express.urlencoded({ extended: false }));
    app.post('/echo', (req, res) => {
      res.locals.answer = 'kept';
      res.status(201).json({
        body: req.body,
        isApp: req.app === app && res.app === app,
        isIncoming: req instanceof http.IncomingMessage && res instanceof http.ServerResponse,
        paired: req.res === res && res.req === req,
        locals: res.locals.answer,
        ip: req.ip,
        is: req.is('urlencoded'),
      });
    });
    const server = createFastServer(app);
    const port = await listen(server);
    try {
      const answer = await exchange(port, {
        method: 'POST',
        path: '/echo',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: 'a=1&b=two',
      });
      expect(answer.status).toBe(201);
      expect(JSON.parse(answer.body)).toEqual({
        body: { a: '1', b: 'two' },
        isApp: true,
        isIncoming: true,
        paired: true,
        locals: 'kept',
        ip: '127.0.0.1',
        is: 'urlencoded',
      });
      expect(seen).toEqual([true, true]);
    } finally {
      await close(server);
    }
  });

  test('When the given prototype does not come from the app, then the server refuses to be built', () => {
    const notAnApp = Object.assign(() => undefined, { request: {}, response: {} });
    expect(() => createFastServer(notAnApp as unknown as express.Express)).toThrow(TypeError);
  });
});
