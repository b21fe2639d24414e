import SwaggerParser from '@apidevtools/swagger-parser';
import request from 'supertest';
import type { Express } from 'express';
import { callbackRoutes } from '../../src/callbacks/callbacks.routes';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { STATUS_RANK } from '../../src/messages/statuses';
import { checkAnswer, listenersOf, openApiDocument } from '../helpers/openapi';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/**
 * What a catch-all mount answers, by its path. A handler mounted with `router.use(paths, …)`
 * answers every method and path below them, which no Express route shows: the send proxy's
 * pass-through (src/proxy/pass-through.routes.ts) is one. Listed here: SignalWire's message
 * calls that reach it (the compatibility SDK's `messages(…)`, the native redaction and the
 * message logs), each of which the document must describe; the rest below the prefixes is
 * described in the tag, as OpenAPI has no path of any depth.
 */
const COMPAT_PASSED_THROUGH = [
  'GET /Messages',
  'GET /Messages/{messageSid}',
  'POST /Messages/{messageSid}',
  'DELETE /Messages/{messageSid}',
  'GET /Messages/{messageSid}/Media',
  'GET /Messages/{messageSid}/Media/{mediaSid}',
  'DELETE /Messages/{messageSid}/Media/{mediaSid}',
].flatMap((call) => ['', '.json'].map((extension) => `${call}${extension}`));
const CATCH_ALL_CALLS: Readonly<Record<string, readonly string[]>> = {
  '/api/laml/2010-04-01': COMPAT_PASSED_THROUGH.map((call) =>
    call.replace(' ', ' /Accounts/{accountSid}'),
  ),
  '/2010-04-01': COMPAT_PASSED_THROUGH.map((call) => call.replace(' ', ' /Accounts/{accountSid}')),
  '/api/messaging': [
    'PATCH /messages/{id}',
    'DELETE /messages/{id}',
    'GET /logs',
    'GET /logs/{id}',
  ],
};

/** Mounts that answer no call of their own: the query API's guards, the docs' assets. */
const GUARDS_AND_ASSETS = new Set(['/v1', '/docs']);

/** The calls a mount at `path` answers, as `METHOD /path`; an unknown catch-all as itself. */
function callsOfMount(path: string): string[] {
  if (path === '/' || GUARDS_AND_ASSETS.has(path)) return [];
  const calls = CATCH_ALL_CALLS[path];
  if (!calls) return [`ANY ${path}/*`];
  return calls.map((call) => call.replace(' ', ` ${path}`));
}

/** Every (method, OpenAPI path) an Express app routes, nested routers and catch-alls included. */
function routesOf(app: Express): string[] {
  const found: string[] = [];
  const walk = (
    stack: Array<{
      route?: { path: string | string[]; methods: object };
      handle?: { stack?: unknown[] };
      rawPath?: string | string[];
    }>,
  ) => {
    for (const layer of stack) {
      if (layer.route) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const path of paths.flatMap(expandOptional)) {
          for (const method of Object.keys(layer.route.methods)) {
            // router.all: the 405 answers of http/method-not-allowed.ts, no operation.
            if (method === '_all') continue;
            found.push(`${method.toUpperCase()} ${path.replace(/:(\w+)/g, '{$1}')}`);
          }
        }
      } else if (layer.handle?.stack) {
        walk(layer.handle.stack as typeof stack);
      } else {
        const paths = Array.isArray(layer.rawPath) ? layer.rawPath : [layer.rawPath ?? '/'];
        found.push(...paths.flatMap(callsOfMount));
      }
    }
  };
  walk((app as unknown as { router: { stack: Parameters<typeof walk>[0] } }).router.stack);
  return found;
}

/** Express 5's optional segments: `/Messages{.json}` is two paths. */
function expandOptional(path: string): string[] {
  const match = /\{([^}]*)\}/.exec(path);
  if (!match) return [path];
  const before = path.slice(0, match.index);
  const after = path.slice(match.index + match[0].length);
  return [...expandOptional(before + after), ...expandOptional(before + match[1] + after)];
}

function documented(listener: 'public' | 'internal'): string[] {
  const doc = openApiDocument();
  const found: string[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const [method, operation] of Object.entries(
      item as Record<string, { servers?: Array<{ url: string }> }>,
    )) {
      if (listenersOf(doc, operation.servers).includes(listener)) {
        found.push(`${method.toUpperCase()} ${path}`);
      }
    }
  }
  return found;
}

describe('GET /openapi.json', () => {
  test('When the document is fetched without credentials, then it is OpenAPI 3.1 and valid', async () => {
    const res = await request(t.internalApp).get('/openapi.json').expect(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.openapi).toBe('3.1.0');
    // The validator resolves references in place: give it a copy.
    await expect(SwaggerParser.validate(structuredClone(res.body))).resolves.toBeDefined();
  });

  test('When a client is generated from the document, then every operation has its own operationId to name its method', () => {
    // Without one, openapi-generator and friends make names up from the path (v1MessagesIdGet).
    const ids: unknown[] = [];
    for (const item of Object.values(openApiDocument().paths ?? {})) {
      for (const operation of Object.values(item as Record<string, { operationId?: string }>)) {
        ids.push(operation.operationId);
      }
    }
    expect(ids.length).toBeGreaterThan(20);
    for (const id of ids) expect(id).toMatch(/^[a-z][A-Za-z]+$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(
      expect.arrayContaining([
        'getMessage',
        'listMessages',
        'listEvents',
        'getStats',
        'listRelays',
        'retryRelay',
      ]),
    );
  });

  test('When the routes of both listeners are listed, then the document describes each of them on its listener', () => {
    // The page's script and the other assets are files, not API.
    const internal = routesOf(t.internalApp).filter((route) => route !== 'GET /docs/start.js');
    // The callbacks are one handler, not Express routes (src/callbacks/callbacks.routes.ts):
    // it dispatches from the table callbackRoutes() lists.
    const pub = [...routesOf(t.publicApp), ...callbackRoutes()];
    expect(internal.length).toBeGreaterThan(10);
    expect(new Set(internal)).toEqual(new Set(documented('internal')));
    expect(new Set(pub)).toEqual(new Set(documented('public')));
  });

  test('When each call the document lists as passed through is made, then the proxy answers it as documented, not the listener with a 404', async () => {
    // SIGNALWIRE_SPACE_URL is a closed port in the tests: a call the proxy passes on gets its
    // 502 in the API's shape, checked against the document like every answer.
    expect(Object.values(CATCH_ALL_CALLS).flat()).toHaveLength(32);
    for (const [prefix, mounted] of Object.entries(CATCH_ALL_CALLS)) {
      for (const listed of mounted) {
        const [method, path] = listed.split(' ') as [string, string];
        const url = `${prefix}${path.replace(/\{\w+\}/g, 'x1')}`;
        const call = request(t.internalApp)[method.toLowerCase() as 'get'];
        const res = await call(url).set('Authorization', basicAuthHeader('x1', 'token'));
        expect([listed, res.status]).toEqual([listed, 502]);
      }
    }
  });
});

describe('the check every API test runs on its answers', () => {
  const check = (
    status: number,
    type: string,
    body: unknown,
    path = '/v1/events',
    headers: Record<string, string> = { etag: 'W/"x"' },
  ) =>
    checkAnswer({
      listener: 'internal',
      method: 'GET',
      url: path,
      status,
      headers: { 'content-type': type, ...headers },
      body: Buffer.from(JSON.stringify(body)),
    });

  test('When an answer matches the document, then it passes; when it does not, then the check says why', () => {
    expect(
      check(200, 'application/json; charset=utf-8', { data: [], next_cursor: 'c' }),
    ).toBeNull();
    expect(check(200, 'application/json', { data: [], next_cursor: 'c', extra: 1 })).toMatch(
      /additional/,
    );
    expect(check(200, 'application/json', { data: [{ seq: 1 }], next_cursor: 'c' })).toMatch(
      /required/,
    );
    expect(check(418, 'application/json', {})).toMatch(/not in the document/);
    // The listener's own refusals fall to the operation's `default`: the error shape.
    expect(check(431, 'application/json', {})).toMatch(/required/);
    expect(check(200, 'text/plain', 'hi')).toMatch(/content type/);
    expect(check(400, 'application/json', { error: { code: 'x', message: 'y' } })).toMatch(
      /request_id/,
    );
    // A path the document does not describe is not checked.
    expect(check(404, 'application/json', { nope: true }, '/v2/nothing')).toBeNull();
  });
});

describe('what a client generated from the document can rely on', () => {
  const json = (url: string, body: unknown) =>
    checkAnswer({
      listener: 'internal',
      method: 'GET',
      url,
      status: 200,
      headers: { 'content-type': 'application/json', etag: 'W/"x"' },
      body: Buffer.from(JSON.stringify(body)),
    });
  const at = '2026-12-03T10:00:00.000Z';
  const event = {
    seq: 1,
    status: 'delivered',
    raw_status: 'delivered',
    error_code: null,
    error_reason: null,
    error_message: null,
    source: 'callback',
    provider_timestamp: null,
    received_at: at,
  };
  const message = {
    id: 'm',
    api: 'cxml',
    project_id: null,
    from: null,
    to: null,
    kind: null,
    status: 'delivered',
    raw_status: 'delivered',
    status_rank: 50,
    error_code: null,
    error_reason: null,
    error_message: null,
    conflict: false,
    num_segments: null,
    num_media: null,
    ref: null,
    sent_via_proxy: false,
    client_status_callback: null,
    stuck: false,
    sweep_step: 0,
    sweep_checked_at: null,
    sweep_error: null,
    created_at: at,
    updated_at: at,
    last_event_at: at,
    history: [event],
  };
  const feedEvent = { ...event, message_id: 'm', api: 'cxml', message_status: 'delivered' };
  const statuses = Object.keys(STATUS_RANK);
  const stats = {
    created_since: at,
    created_until: at,
    total: 0,
    by_status: Object.fromEntries(statuses.map((status) => [status, 0])),
    delivery_rate: null,
    by_error: [],
    latency_ms: { p50: null, p95: null, p99: null },
    final_within_10s: null,
    stuck: 0,
    conflicts: 0,
  };

  test('When a status is read from a message, its history or the feed, then it is one of the canonical statuses', () => {
    expect(json('/v1/messages/m', message)).toBeNull();
    expect(json('/v1/events', { data: [feedEvent], next_cursor: 'c' })).toBeNull();
    // A generated client switches over these: the document must name the set (DESIGN §3).
    expect(json('/v1/messages/m', { ...message, status: 'bogus' })).toMatch(/enum/);
    expect(
      json('/v1/messages/m', { ...message, history: [{ ...event, status: 'bogus' }] }),
    ).toMatch(/enum/);
    expect(
      json('/v1/events', { data: [{ ...feedEvent, message_status: 'bogus' }], next_cursor: 'c' }),
    ).toMatch(/enum/);
  });

  test('When a bigint is read (an event seq, a relay id), then the document says int64, not a bare integer', () => {
    const schemas = (openApiDocument().components?.schemas ?? {}) as Record<
      string,
      { properties: Record<string, { format?: string }> }
    >;
    for (const [schema, field] of [
      ['HistoryEvent', 'seq'],
      ['FeedEvent', 'seq'],
      ['Relay', 'id'],
      ['Relay', 'event_seq'],
    ] as const) {
      expect([schema, field, schemas[schema]!.properties[field]!.format]).toEqual([
        schema,
        field,
        'int64',
      ]);
    }
  });

  test('When the stats are read, then by_status has every status and nothing else', () => {
    expect(json('/v1/stats', stats)).toBeNull();
    const { read: _read, ...withoutRead } = stats.by_status;
    expect(json('/v1/stats', { ...stats, by_status: withoutRead })).toMatch(/required/);
    expect(json('/v1/stats', { ...stats, by_status: { ...stats.by_status, lost: 1 } })).toMatch(
      /additional/,
    );
  });
});

describe('the headers a client reads', () => {
  const answer = (status: number, headers: Record<string, string>, url = '/v1/messages') =>
    checkAnswer({
      listener: 'internal',
      method: 'GET',
      url,
      status,
      headers,
      body: Buffer.alloc(0),
    });

  test('When a 304 comes without its ETag, or a 429 or 503 without Retry-After, then the check refuses it', () => {
    expect(answer(304, { etag: 'W/"x"' })).toBeNull();
    expect(answer(304, {})).toMatch(/ETag/);
    expect(answer(304, {}, '/')).toMatch(/ETag/);
    for (const status of [429, 503]) {
      expect(answer(status, { 'retry-after': '1' })).toBeNull();
      expect(answer(status, {})).toMatch(/Retry-After/);
    }
  });

  test('When an operation answers 304, then it declares If-None-Match, so a generated client may send it', () => {
    const doc = openApiDocument();
    const conditional = Object.entries(doc.paths ?? {}).filter(
      ([, item]) => item.get?.responses?.['304'] !== undefined,
    );
    expect(conditional.length).toBeGreaterThanOrEqual(6);
    for (const [path, item] of conditional) {
      const names = (item.get!.parameters ?? []).map(
        (p) => `${(p as { in: string }).in}:${(p as { name: string }).name}`,
      );
      expect([path, names]).toEqual([path, expect.arrayContaining(['header:If-None-Match'])]);
    }
  });
});

describe('GET /readyz', () => {
  const readiness = (body: unknown) =>
    checkAnswer({
      listener: 'public',
      method: 'GET',
      url: '/readyz',
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify(body)),
    });

  test('When readiness is read, then every field it carries is documented, and no other', () => {
    expect(
      readiness({
        status: 'ready',
        database: 'ok',
        schema: { state: 'ahead', version: 9000, needs: 12, oldest_reader: 6 },
        spool: { state: 'idle', depth: 0, dead_letters: 0 },
      }),
    ).toBeNull();
    expect(readiness({ status: 'ready', schema: { state: 'ok', oldestReader: 6 } })).toMatch(
      /additional/,
    );
    expect(readiness({ status: 'ready', spool: { state: 'idle', depth: 0 } })).toMatch(/required/);
    expect(readiness({ status: 'ready', verdict: 'fine' })).toMatch(/additional/);
  });
});

describe('GET /docs', () => {
  test('When the docs are opened, then the page and every asset it loads come from the service', async () => {
    // DESIGN §6 names GET /docs: the page itself, not a redirect; /docs/ is the same page.
    const page = await request(t.internalApp).get('/docs').expect(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect((await request(t.internalApp).get('/docs/').expect(200)).text).toBe(page.text);
    const assets = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(assets.length).toBeGreaterThanOrEqual(4);
    expect(page.text).not.toMatch(/<script>[^<]/); // no inline script: the CSP forbids them
    for (const asset of assets) {
      expect(asset).toMatch(/^\/docs\/[^/]+$/); // the service's own, whichever URL opened it
      const res = await request(t.internalApp).get(asset).expect(200);
      expect(res.headers['content-type']).toMatch(/javascript|css/);
    }
    const start = await request(t.internalApp).get('/docs/start.js').expect(200);
    expect(start.text).toContain("url: '/openapi.json'");
    // Swagger UI's validator badge sends the document's URL to validator.swagger.io.
    expect(start.text).toContain('validatorUrl: null');
  });

  test('When the docs are asked on the public listener, then they are not there', async () => {
    await request(t.publicApp).get('/openapi.json').expect(404);
    await request(t.publicApp).get('/docs/').expect(404);
  });
});

test("When a dashboard developer reads the relay retry's 409, then it names what answers 409 (a relay delivered or being attempted), not a pending relay, which is retried", () => {
  const retry = openApiDocument().paths?.['/v1/relays/{id}/retry']?.post;
  const conflict = retry?.responses?.['409'] as { description?: string } | undefined;
  expect(retry?.description).toMatch(/already_delivered/);
  expect(conflict?.description).toMatch(/delivered/);
  expect(conflict?.description).not.toMatch(/not dead/);
});
