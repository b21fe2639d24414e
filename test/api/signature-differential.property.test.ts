import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { RestClient } from '@signalwire/compatibility-api';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { TEST_SIGNING_KEY, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Differential: whatever SignalWire's official SDK (`validateRequest`) accepts for a callback
 * URL, sw-status accepts too, through HTTP on a real callback route — and what was changed
 * after signing it refuses, as the SDK does. A request the SDK accepts and sw-status refuses is
 * a callback lost in production.
 *
 * The signature is made here from SIGNALWIRE.md's description of the schemes, independently of
 * src/signalwire/signing.ts, and the SDK is asked about every one. Requests go out with
 * node:http, their request target byte for byte (supertest would re-encode it), behind
 * PUBLIC_BASE_URLs an operator writes: a bare host, a path prefix an ingress strips (with the
 * default port written out and a trailing slash), a non-default port.
 */

const OLD_KEY = 'PSK_differential_old_key_0123456789';
const UNKNOWN_KEY = 'PSK_not_configured_0123456789';
const KEYS = [TEST_SIGNING_KEY, OLD_KEY];

/** PUBLIC_BASE_URL as configured, and the prefix the proxy then writes into callback URLs. */
const BASES = [
  { env: 'https://hooks.example.com', prefix: 'https://hooks.example.com' },
  {
    env: 'https://hooks.example.com:443/sw-status/',
    prefix: 'https://hooks.example.com:443/sw-status',
  },
  // Behind a proxy it trusts: X-Forwarded-* then set req.protocol and req.hostname.
  { env: 'http://lb.example:8080/a/b', prefix: 'http://lb.example:8080/a/b', trustProxy: 'true' },
] as const;

type Pairs = Array<[string, string]>;

// --- SIGNALWIRE.md "Signing", written out again here ----------------------------------------

function schemeB(key: string, url: string, params: Pairs): string {
  return createHmac('sha1', key).update(signedStringB(url, params), 'utf8').digest('base64');
}

/** What scheme B signs: url + key/value of every parameter, stable-sorted by key. */
function signedStringB(url: string, params: Pairs): string {
  const sorted = params
    .map((pair, index) => ({ pair, index }))
    .sort((a, b) => (a.pair[0] < b.pair[0] ? -1 : a.pair[0] > b.pair[0] ? 1 : a.index - b.index));
  return url + sorted.map(({ pair }) => pair[0] + pair[1]).join('');
}

function schemeA(key: string, url: string, rawBody: string): string {
  return createHmac('sha1', key)
    .update(url + rawBody, 'utf8')
    .digest('hex');
}

/** The SDK's view of form parameters: an object, a repeated key's values in an array. */
function sdkParams(pairs: Pairs): Record<string, string | string[]> {
  const params = Object.create(null) as Record<string, string | string[]>;
  for (const [name, value] of pairs) {
    const seen = params[name];
    if (seen === undefined) params[name] = value;
    else params[name] = Array.isArray(seen) ? [...seen, value] : [seen, value];
  }
  return params;
}

// --- How a URL or a form body may be spelled on the wire -------------------------------------

const UTF8 = new TextEncoder();
const hex = (byte: number) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;

/** Ways of writing one component; all decode (as a form) to the same text. */
const ENCODERS: Array<(text: string) => string> = [
  // HTML forms and URLSearchParams: space as `+`.
  (text) => encodeURIComponent(text).replace(/%20/g, '+'),
  // RFC 3986, sub-delimiters encoded too.
  (text) => encodeURIComponent(text).replace(/[!'()*]/g, (c) => hex(c.charCodeAt(0))),
  // Lower-case hex digits.
  (text) => encodeURIComponent(text).replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase()),
  // Every byte escaped.
  (text) => [...UTF8.encode(text)].map(hex).join(''),
];

const encodePairs = (pairs: Pairs, encoder: number[]): string =>
  pairs
    .map(([name, value], i) => {
      const encode = ENCODERS[encoder[i % encoder.length]! % ENCODERS.length]!;
      // A parameter with an empty value is sometimes sent without its `=`.
      return value === '' && i % 2 === 1 ? encode(name) : `${encode(name)}=${encode(value)}`;
    })
    .join('&');

// --- Generators ---------------------------------------------------------------------------

const textUnit = fc.constantFrom(
  'a',
  'Z',
  '0',
  ' ',
  '+',
  '%',
  '&',
  '=',
  '?',
  '/',
  '#',
  ';',
  '~',
  '*',
  "'",
  '(',
  ')',
  '!',
  'ü',
  '€',
  '😀',
  '\u00a0',
  '\t',
  '.',
  '-',
  '_',
);
const text = fc.oneof(
  fc.string({ unit: textUnit, maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 6 }),
);
/** Extra parameter names: repeated, empty, unicode, prefixes of one another. */
const extraName = fc.constantFrom('Body', 'MediaUrl', 'MediaUrl0', 'x', 'x y', 'ü', 'Z', 'a', 'ab');
const pairs = (names: fc.Arbitrary<string>) =>
  fc.array(fc.tuple(names, text), { maxLength: 6 }) as fc.Arbitrary<Pairs>;
const encoder = fc.array(fc.nat(ENCODERS.length - 1), { minLength: 1, maxLength: 4 });

const callbackPath = fc.constantFrom(
  '/callbacks/cxml',
  '/callbacks/cxml/',
  '/Callbacks/CXML',
  // A token no secret verifies (minted under one since retired): the signature must
  // authenticate (the URL SignalWire signed holds it). A segment not shaped like a token is
  // refused whatever its signature (signature-url-extension.test.ts).
  `/callbacks/cxml/${mintCallbackToken(['a secret since retired']).token}`,
);
/** The query of the callback URL as configured: none, a bare `?`, or parameters. */
const configuredQuery = fc.oneof(
  fc.constant(''),
  fc.constant('?'),
  fc
    .tuple(pairs(fc.constantFrom('app', 'env', 'q', 'x y', 'é')), encoder)
    .map(([query, how]) => `?${encodePairs(query, how)}`),
);

/** A configured query ready for one more parameter: `?`, or the query and `&`. */
const openQuery = (query: string): string => (query === '' || query === '?' ? '?' : `${query}&`);

/**
 * Which URL SignalWire signed: as given, or one of the spellings the SDK also tries — the
 * default port added, or the port removed (any port: the SDK's removePort).
 */
type UrlSpelling = 'as_given' | 'default_port_added' | 'port_removed';
const spelling = fc.constantFrom<UrlSpelling>('as_given', 'default_port_added', 'port_removed');

function signedUrl(prefix: string, rest: string, how: UrlSpelling): string {
  const pathAt = prefix.indexOf('/', prefix.indexOf('//') + 2);
  const origin = pathAt === -1 ? prefix : prefix.slice(0, pathAt);
  const basePath = pathAt === -1 ? '' : prefix.slice(pathAt);
  const { protocol, hostname, port } = new URL(origin); // port is '' for the default port
  if (how === 'as_given' || (how === 'default_port_added' && port !== '')) return prefix + rest;
  const defaultPort = how === 'default_port_added' ? (protocol === 'https:' ? ':443' : ':80') : '';
  return `${protocol}//${hostname}${defaultPort}${basePath}${rest}`;
}

/** What may change between signing and sending; `none` is the genuine request. */
type Tamper =
  | 'none'
  | 'unknown_key'
  | 'value'
  | 'drop_param'
  | 'add_param'
  | 'query'
  | 'path'
  | 'swap_repeated'
  | 'forged_host';
const tamper = fc.constantFrom<Tamper>(
  'none',
  'none',
  'none',
  'unknown_key',
  'value',
  'drop_param',
  'add_param',
  'query',
  'path',
  'swap_repeated',
  'forged_host',
);
/**
 * What a load balancer adds, or anyone forges: the URL is never rebuilt from them, so they
 * neither break a genuine signature nor let one made for the forger's own URL through.
 */
const FORGED_HOST = 'evil.example:8443';
const proxyHeaders = fc.constantFrom<Record<string, string>>(
  {},
  { host: FORGED_HOST },
  {
    'x-forwarded-host': FORGED_HOST,
    'x-forwarded-proto': 'https',
    'x-forwarded-port': '8443',
    'x-forwarded-for': '203.0.113.7',
    'x-forwarded-prefix': '/other',
  },
  { forwarded: `for=203.0.113.7;host=${FORGED_HOST};proto=https` },
);
const signatureHeader = fc.constantFrom(
  'X-SignalWire-Signature',
  'x-signalwire-signature',
  'X-Twilio-Signature',
  'X-TWILIO-SIGNATURE',
);

// --- The service ------------------------------------------------------------------------------

interface Service {
  app: TestApp;
  server: http.Server;
  prefix: string;
}
const services: Service[] = [];
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

beforeAll(async () => {
  for (const base of BASES) {
    const app = await createTestApp(
      {
        PUBLIC_BASE_URL: base.env,
        SIGNALWIRE_SIGNING_KEYS: KEYS.join(','),
        RATE_LIMIT_PUBLIC_PER_MINUTE: '1000000',
        ...('trustProxy' in base ? { TRUST_PROXY: base.trustProxy } : {}),
      },
      services[0] ? { database: services[0].app.database } : {},
    );
    expect(app.config.publicBaseUrl).toBe(base.prefix);
    const server = http.createServer(app.publicApp);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    services.push({ app, server, prefix: base.prefix });
  }
});
afterAll(async () => {
  agent.destroy();
  for (const { server } of services) await new Promise((resolve) => server.close(resolve));
  for (const { app } of [...services].reverse()) await app.close();
});

function send(
  service: Service,
  method: 'GET' | 'POST',
  target: string,
  headers: Record<string, string>,
  body = '',
): Promise<{ status: number; body: string }> {
  const { port } = service.server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        method,
        path: target,
        headers:
          method === 'POST'
            ? { ...headers, 'content-length': String(Buffer.byteLength(body)) }
            : headers,
      },
      (res) => {
        let answer = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (answer += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body: answer }));
      },
    );
    req.on('error', reject);
    req.end(method === 'POST' ? body : undefined);
  });
}

const RUNS = Number(process.env.SIGNATURE_DIFFERENTIAL_RUNS ?? 150);

test('When SignalWire signs a form callback (POST or GET) for any URL and parameters, then sw-status accepts exactly what the SDK accepts, and refuses it changed', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.nat(BASES.length - 1),
      callbackPath,
      configuredQuery,
      fc.boolean(),
      pairs(extraName),
      encoder,
      spelling,
      fc.nat(KEYS.length - 1),
      signatureHeader,
      tamper,
      proxyHeaders,
      async (which, path, query, asGet, extra, how, urlSpelling, keyIndex, header, change, lb) => {
        const service = services[which]!;
        const fields: Pairs = [
          ['MessageSid', randomUUID()],
          ['MessageStatus', 'delivered'],
          ...extra,
        ];
        // A GET carries the fields in its query, after the configured one; nothing is appended
        // to what is signed. A POST carries them in its body.
        const fieldQuery = encodePairs(fields, how);
        const sentQuery = asGet ? `${openQuery(query)}${fieldQuery}` : query;
        const signedParams = asGet ? [] : fields;
        let key = KEYS[keyIndex]!;
        let requestPath: string = path;
        let requestQuery = sentQuery;
        let sentParams: Pairs = fields;

        switch (change) {
          case 'unknown_key':
            key = UNKNOWN_KEY;
            break;
          case 'value':
            sentParams = fields.map(([n, v], i) => (i === 1 ? [n, 'failed'] : [n, v]));
            break;
          case 'drop_param':
            sentParams = fields.slice(0, -1);
            break;
          case 'add_param':
            sentParams = [...fields, ['Extra', 'x']];
            break;
          case 'query':
            requestQuery = `${sentQuery}${sentQuery.includes('?') ? '&' : '?'}forged=1`;
            break;
          case 'path':
            // Still a callback route (they are case-insensitive), but not the URL signed.
            requestPath = path.startsWith('/callbacks')
              ? path.replace('/callbacks', '/CALLBACKS')
              : path.toLowerCase();
            break;
          case 'swap_repeated':
            sentParams = [...fields].reverse();
            break;
        }
        // A GET's fields travel in its query: a changed field changes the URL.
        if (asGet && ['value', 'drop_param', 'add_param', 'swap_repeated'].includes(change)) {
          requestQuery = `${openQuery(query)}${encodePairs(sentParams, how)}`;
        }

        // The forger signs for the URL its own Host and X-Forwarded-* headers describe.
        const signed =
          change === 'forged_host'
            ? `https://${FORGED_HOST}${path}${sentQuery}`
            : signedUrl(service.prefix, path + sentQuery, urlSpelling);
        const signature = schemeB(key, signed, signedParams);
        const headers =
          change === 'forged_host'
            ? { host: FORGED_HOST, 'x-forwarded-host': FORGED_HOST, 'x-forwarded-proto': 'https' }
            : lb;
        const sentUrl = service.prefix + requestPath + requestQuery;
        const sentSigned = asGet ? [] : sentParams;
        const sdkAccepts = KEYS.some((k) =>
          RestClient.validateRequest(k, signature, sentUrl, sdkParams(sentSigned)),
        );

        const res = asGet
          ? await send(service, 'GET', requestPath + requestQuery, {
              ...headers,
              [header]: signature,
            })
          : await send(
              service,
              'POST',
              requestPath + requestQuery,
              {
                ...headers,
                [header]: signature,
                'content-type': 'application/x-www-form-urlencoded',
              },
              encodePairs(sentParams, how),
            );

        // A change can leave what is signed as it was (a swap without a repeated key).
        const unchanged =
          change !== 'unknown_key' &&
          change !== 'forged_host' &&
          signedStringB(
            signedUrl(service.prefix, requestPath + requestQuery, urlSpelling),
            sentSigned,
          ) === signedStringB(signed, signedParams);
        if (change === 'none') {
          // The SDK accepts every genuine spelling here (an upper-case host aside: none here).
          expect(sdkAccepts).toBe(true);
          expect({ status: res.status, body: res.body }).toEqual({
            status: 200,
            body: '<Response/>',
          });
        } else if (!unchanged) {
          expect(sdkAccepts).toBe(false);
          expect(res.status).toBe(403);
        }
      },
    ),
    { numRuns: RUNS },
  );
}, 120_000);

/** A JSON body as different senders spell it: spacing, `\u` escapes, raw UTF-8. */
function spellJson(value: Record<string, unknown>, style: number): string {
  const compact = JSON.stringify(value);
  if (style === 1) return JSON.stringify(value, null, 2);
  if (style === 2)
    return compact.replace(
      /[\u0080-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
  return compact;
}

test('When SignalWire signs a JSON callback (hex, SHA-256 header, or bodySHA256) for any URL and body, then sw-status accepts it as signed and refuses it changed', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.nat(BASES.length - 1),
      fc.constantFrom('native', 'cxml'),
      configuredQuery,
      fc.dictionary(fc.constantFrom('body', 'to', 'x', 'ü', ''), text, { maxKeys: 3 }),
      fc.nat(2),
      spelling,
      fc.nat(KEYS.length - 1),
      fc.constantFrom('sha1', 'sha256', 'both', 'bodySHA256'),
      signatureHeader,
      fc.constantFrom('none', 'none', 'unknown_key', 'respelled', 'query', 'value'),
      async (which, api, query, extra, style, urlSpelling, keyIndex, how, header, change) => {
        const service = services[which]!;
        const id = randomUUID();
        const fields =
          api === 'native'
            ? { ...extra, id, status: 'delivered', timestamp: '2026-03-17T22:26:57Z' }
            : { ...extra, MessageSid: id, MessageStatus: 'delivered' };
        const raw = spellJson(fields, style);
        // Twilio-style: the URL SignalWire calls carries the body's hash, and only the URL is
        // signed (scheme B with no parameters); the SDK's validateRequestWithBody checks it.
        const hashQuery =
          how === 'bodySHA256'
            ? `${openQuery(query)}bodySHA256=${createHash('sha256').update(raw).digest('hex')}`
            : query;
        const rest = `/callbacks/${api}${hashQuery}`;
        const signed = signedUrl(service.prefix, rest, urlSpelling);
        const key = change === 'unknown_key' ? UNKNOWN_KEY : KEYS[keyIndex]!;
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (how === 'bodySHA256') headers[header] = schemeB(key, signed, []);
        if (how === 'sha1' || how === 'both') headers[header] = schemeA(key, signed, raw);
        if (how === 'sha256' || how === 'both') {
          headers['X-Signalwire-SHA256-Signature'] = createHmac('sha256', key)
            .update(signed + raw, 'utf8')
            .digest('hex');
        }

        let target = rest;
        let body = raw;
        if (change === 'respelled') body = spellJson(fields, (style + 1) % 3);
        if (change === 'value') body = raw.replace('"delivered"', '"failed"  ');
        if (change === 'query') target = `${rest}${rest.includes('?') ? '&' : '?'}forged=1`;
        if (how === 'bodySHA256') {
          const sdkAccepts = KEYS.some((k) =>
            RestClient.validateRequestWithBody(k, headers[header]!, service.prefix + target, body),
          );
          const changed = change !== 'none' && !(change === 'respelled' && body === raw);
          expect(sdkAccepts).toBe(!changed);
        }

        const res = await send(service, 'POST', target, headers, body);
        if (change === 'none' || (change === 'respelled' && body === raw)) {
          expect(res.status).toBe(200);
        } else {
          expect(res.status).toBe(403);
        }
      },
    ),
    { numRuns: RUNS },
  );
}, 120_000);
