import http from 'node:http';
import fc from 'fast-check';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import * as bodyLimits from '../../src/http/body-limits';
import { MAX_FORM_PARAMETERS } from '../../src/http/body-limits';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import {
  TEST_API_TOKEN,
  TEST_PUBLIC_BASE_URL,
  TEST_SIGNING_KEY,
  TEST_TOKEN_SECRET,
  createTestApp,
} from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// Hundreds of generated cases, some of them 64 KiB bodies: more than the default 30 s on a
// machine shared with other test runs.
jest.setTimeout(180_000);

/**
 * Property-based tests of the public listener, through HTTP against the real app and
 * PostgreSQL: whatever body, headers, path and credentials arrive, the answer is a documented
 * 4xx or a 200 — never a 500 — and the work is bounded: no request turns more than
 * MAX_FORM_PARAMETERS parameters into fields or hands JSON.parse more than the body limit.
 */

const DOCUMENTED = [200, 400, 401, 403, 413, 415];
const BODY_LIMIT = 64 * 1024;

let t: TestApp;
let server: http.Server;
let fieldsSpy: jest.SpyInstance;
let parseSpy: jest.SpyInstance;
beforeAll(async () => {
  t = await createTestApp({ RATE_LIMIT_PUBLIC_PER_MINUTE: '10000000' });
  server = http.createServer(t.publicApp);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fieldsSpy = jest.spyOn(bodyLimits, 'formFields');
  parseSpy = jest.spyOn(JSON, 'parse');
});
afterAll(async () => {
  jest.restoreAllMocks();
  await new Promise((resolve) => server.close(resolve));
  await t.close();
});

/** Sends a request and checks the answer and the work it cost. */
async function expectBounded(send: () => request.Test, allowed = DOCUMENTED) {
  fieldsSpy.mockClear();
  parseSpy.mockClear();
  const res = await send();
  expect(allowed).toContain(res.status);
  if (res.status !== 200) {
    expect(res.body.error).toEqual(
      expect.objectContaining({
        code: expect.any(String),
        message: expect.any(String),
        request_id: expect.any(String),
      }),
    );
  }
  for (const [pairs] of fieldsSpy.mock.calls) {
    expect((pairs as unknown[]).length).toBeLessThanOrEqual(MAX_FORM_PARAMETERS);
  }
  const parsedBytes = parseSpy.mock.calls.reduce(
    (sum, [text]) => sum + (typeof text === 'string' ? text.length : 0),
    0,
  );
  // The request body at most, plus the small error answer supertest parses.
  expect(parsedBytes).toBeLessThanOrEqual(BODY_LIMIT + 4096);
  return res;
}

// Bodies an attacker would try: the reported stalls, deep nesting, broken escapes, unicode
// (lone surrogates included), NUL, and plain noise.
const adversarialBody = fc.oneof(
  fc.integer({ min: 1, max: 40_000 }).map((n) => 'a&'.repeat(n)),
  fc.integer({ min: 1, max: 40_000 }).map((n) => '&'.repeat(n)),
  fc.integer({ min: 1, max: 30_000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`),
  fc.integer({ min: 1, max: 10_000 }).map((n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`),
  fc.integer({ min: 1, max: 20_000 }).map((n) => '%'.repeat(n)),
  fc.integer({ min: 1, max: 5_000 }).map((n) => `MessageSid=${'x'.repeat(n)}&MessageStatus=sent`),
  fc.string({ unit: 'binary', maxLength: 2_000 }),
  fc.string({
    unit: fc.constantFrom('a', '=', '&', '%', '2', 'F', '+', '[', '{', '"', '\\', '\u0000', 'é'),
    maxLength: 3_000,
  }),
  fc.jsonValue().map((v) => JSON.stringify(v) ?? ''),
  fc.constant('x'.repeat(BODY_LIMIT + 1)),
);

const contentType = fc.constantFrom(
  undefined,
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=utf-8',
  'application/json',
  'application/json; charset=utf-16',
  'application/vnd.signalwire+json',
  'APPLICATION/JSON',
  'text/plain',
  'multipart/form-data; boundary=x',
  'application/xml',
  '',
);

const credentials = fc.oneof(
  fc.constant({}),
  fc.string({ maxLength: 60 }).map((s) => ({ 'X-SignalWire-Signature': s || 'x' })),
  fc.string({ maxLength: 60 }).map((s) => ({ 'X-Twilio-Signature': s || 'x' })),
  fc.stringMatching(/^[0-9a-f]{64}$/).map((s) => ({ 'X-Signalwire-SHA256-Signature': s })),
);

const path = fc.oneof(
  fc.constantFrom('/callbacks/cxml', '/callbacks/native'),
  fc
    .tuple(
      fc.constantFrom('/callbacks/cxml/', '/callbacks/native/'),
      fc.oneof(
        fc.stringMatching(/^[A-Za-z0-9_.-]{1,80}$/),
        fc.constant(mintCallbackToken(['not-our-secret-0123456789']).token),
        fc.constant(mintCallbackToken([TEST_TOKEN_SECRET], new Date(0)).token),
      ),
    )
    .map(([prefix, token]) => prefix + token),
  fc
    .tuple(
      fc.constantFrom('/callbacks/cxml?', '/callbacks/native?'),
      fc.stringMatching(/^[a-z=&%0-9]{0,200}$/),
    )
    .map(([prefix, query]) => prefix + query),
);

test('When any body, content type, path and credentials arrive, then the answer is a documented 4xx or 200 and the work is bounded', async () => {
  await fc.assert(
    fc.asyncProperty(
      path,
      adversarialBody,
      contentType,
      credentials,
      fc.constantFrom(undefined, 'gzip', 'br', 'identity', 'compress'),
      async (url, body, type, headers, encoding) => {
        await expectBounded(() => {
          const req = request(server).post(url).set(headers);
          if (type !== undefined) req.set('Content-Type', type);
          if (encoding !== undefined) req.set('Content-Encoding', encoding);
          return req.send(body);
        });
      },
    ),
    { numRuns: 250 },
  );
});

test('When any GET query arrives, then the answer is documented and the work bounded', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.stringMatching(/^[A-Za-z0-9=&%+._~-]{0,4000}$/),
        fc.integer({ min: 1, max: 3_000 }).map((n) => 'a&'.repeat(n)),
      ),
      credentials,
      async (query, headers) => {
        await expectBounded(() => request(server).get(`/callbacks/cxml?${query}`).set(headers));
      },
    ),
    { numRuns: 150 },
  );
});

const messageId = fc.oneof(fc.uuid(), fc.string({ maxLength: 80 }));
const fieldValue = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('', ' ', '\u0000', 'delivered', 'undelivered', '30003'),
);

test('When a correctly signed form carries arbitrary parameters, then it is stored (200) or refused as bad input (400/413), never unauthenticated or a 500', async () => {
  const extraParams = fc.array(fc.tuple(fc.string({ maxLength: 20 }), fieldValue), {
    maxLength: 30,
  });
  await fc.assert(
    fc.asyncProperty(messageId, fieldValue, extraParams, async (sid, status, extra) => {
      const pairs: Array<[string, string]> = [
        ['MessageSid', sid],
        ['MessageStatus', status],
        ...extra,
      ];
      const url = '/callbacks/cxml';
      const signature = signFormParams(
        TEST_SIGNING_KEY,
        TEST_PUBLIC_BASE_URL + url,
        // What the receiver will parse back (lone surrogates become U+FFFD on the wire).
        [...new URLSearchParams(new URLSearchParams(pairs).toString())],
      );
      const res = await expectBounded(
        () =>
          request(server)
            .post(url)
            .set('Content-Type', 'application/x-www-form-urlencoded')
            .set('X-SignalWire-Signature', signature)
            .send(new URLSearchParams(pairs).toString()),
        [200, 400, 413],
      );
      if (res.status === 200) {
        const stored = await request(t.internalApp)
          .get(`/v1/messages/${encodeURIComponent(sid.trim())}`)
          .auth(TEST_API_TOKEN, { type: 'bearer' });
        expect(stored.status).toBe(200);
      }
    }),
    { numRuns: 150 },
  );
});

test('When a correctly signed JSON body holds any value, then it is stored (200) or refused as bad input (400), never a 500', async () => {
  const callbackLike = fc.record(
    {
      id: messageId,
      status: fieldValue,
      timestamp: fc.oneof(
        fc.string({ maxLength: 30 }),
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
      ),
      error_code: fc.oneof(fc.constant(null), fc.integer(), fieldValue),
      number_of_segments: fc.oneof(fc.integer(), fc.string({ maxLength: 8 })),
      media: fc.oneof(fc.jsonValue(), fc.array(fc.string({ maxLength: 10 }))),
      extra: fc.jsonValue(),
    },
    { requiredKeys: [] },
  );
  await fc.assert(
    fc.asyncProperty(fc.oneof(callbackLike, fc.jsonValue()), async (value) => {
      const body = JSON.stringify(value) ?? 'null';
      const url = '/callbacks/native';
      await expectBounded(
        () =>
          request(server)
            .post(url)
            .set('Content-Type', 'application/json')
            .set(
              'X-SignalWire-Signature',
              signJsonBody(TEST_SIGNING_KEY, TEST_PUBLIC_BASE_URL + url, body),
            )
            .send(body),
        [200, 400, 413],
      );
    }),
    { numRuns: 200 },
  );
});

describe('the send proxy’s create routes', () => {
  const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
  const auth = `Basic ${Buffer.from(`${PROJECT}:PTtoken`).toString('base64')}`;
  // The test configuration's upstream (127.0.0.1:9) refuses: a valid send is a 502.
  const PROXY_ANSWERS = [400, 401, 413, 415, 422, 502];

  test('When any body and content type are posted, then the answer is the API’s own 4xx (or 502 upstream), never a 500, and the work is bounded', async () => {
    const internal = http.createServer(t.internalApp);
    await new Promise<void>((resolve) => internal.listen(0, '127.0.0.1', resolve));
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(
            `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`,
            '/api/messaging/messages',
          ),
          fc.oneof(
            adversarialBody,
            fc.integer({ min: 1, max: 120_000 }).map((n) => 'a&'.repeat(n)),
          ),
          contentType,
          fc.boolean(),
          async (url, body, type, withAuth) => {
            fieldsSpy.mockClear();
            parseSpy.mockClear();
            const req = request(internal).post(url);
            if (withAuth) req.set('Authorization', auth);
            if (type !== undefined) req.set('Content-Type', type);
            const res = await req.send(body);
            expect(PROXY_ANSWERS).toContain(res.status);
            for (const [pairs] of fieldsSpy.mock.calls) {
              expect((pairs as unknown[]).length).toBeLessThanOrEqual(MAX_FORM_PARAMETERS);
            }
          },
        ),
        { numRuns: 150 },
      );
    } finally {
      await new Promise((resolve) => internal.close(resolve));
    }
  });
});
