import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { RequestListener, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMessageLookup, lookupPath } from '../../src/reconcile/lookup-client';
import type { LookupTarget } from '../../src/reconcile/lookup-client';
import { signalwireEgressProxy } from '../../src/signalwire/egress-proxy';
import { startForwardProxy } from '../helpers/forward-proxy';
import type { ForwardProxy } from '../helpers/forward-proxy';
import { testConfig } from '../helpers/test-app';
import { startTlsUpstream } from '../helpers/tls-upstream';
import type { TlsUpstream } from '../helpers/tls-upstream';

/**
 * Reconciliation's lookups are SignalWire-bound like the send proxy's calls: with
 * HTTPS_PROXY / HTTP_PROXY set they take the forward proxy (the global fetch with undici's
 * ProxyAgent, on real sockets), and NO_PROXY sends them direct.
 */

const PROJECT = 'b7e6d5c4-3b2a-4190-8f7e-6d5c4b3a2910';
const TOKEN = 'PTlookupproxytoken';

/** A message resource for whatever sid is asked for. */
const answerLookup: RequestListener = (req, res) => {
  const sid = (req.url ?? '')
    .split('/')
    .at(-1)!
    .replace(/\.json$/, '');
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ sid, status: 'delivered' }));
};

let plain: Server;
let plainUrl = '';
let secure: TlsUpstream;
let egress: ForwardProxy;

beforeAll(async () => {
  plain = createServer(answerLookup);
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  plainUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
  secure = await startTlsUpstream(answerLookup);
  egress = await startForwardProxy();
});

afterEach(() => {
  egress.requests.length = 0;
});

afterAll(async () => {
  await egress.close();
  await secure.close();
  plain.closeAllConnections();
  await new Promise((resolve) => plain.close(resolve));
  jest.restoreAllMocks();
});

/** A lookup as createReconciler builds it, for the given space and environment. */
function lookupWith(spaceUrl: string, env: Record<string, string>) {
  const config = testConfig({
    SIGNALWIRE_SPACE_URL: spaceUrl,
    SIGNALWIRE_CREDENTIALS: `${PROJECT}:${TOKEN}`,
    ...env,
  });
  return createMessageLookup({
    baseUrl: spaceUrl,
    credentials: config.signalwireCredentials,
    timeoutMs: 5_000,
    proxy: signalwireEgressProxy(config),
  });
}

const target = (): LookupTarget => ({ id: randomUUID(), api: 'cxml', projectId: PROJECT });

test('When HTTP_PROXY is set, then a lookup at an http:// space goes through it as an absolute-URI request with its credentials', async () => {
  const message = target();
  const result = await lookupWith(plainUrl, {
    HTTP_PROXY: egress.urlWith('lookup-user', 'lookup-pass'),
  }).lookup(message);

  expect(result).toEqual({ kind: 'found', answer: { sid: message.id, status: 'delivered' } });
  expect(egress.requests).toEqual([
    {
      line: `GET ${plainUrl}${lookupPath(message)}`,
      proxyAuthorization: `Basic ${Buffer.from('lookup-user:lookup-pass').toString('base64')}`,
    },
  ]);
});

test('When the proxy URL has a user name and no password, then lookups send it as the send proxy and curl do', async () => {
  const result = await lookupWith(plainUrl, { HTTP_PROXY: egress.urlWith('tok3n', '') }).lookup(
    target(),
  );
  expect(result).toMatchObject({ kind: 'found' });
  expect(egress.requests.map((r) => r.proxyAuthorization)).toEqual([
    `Basic ${Buffer.from('tok3n:').toString('base64')}`,
  ]);
});

test('When the forward proxy cannot be reached, then the lookup’s failure says why, not only "fetch failed"', async () => {
  const closed = await startForwardProxy();
  const url = closed.url;
  await closed.close();
  const result = await lookupWith(plainUrl, { HTTP_PROXY: url }).lookup(target());
  expect(result).toMatchObject({ kind: 'failed', unavailable: true });
  expect((result as { error: string }).error).toMatch(/^fetch failed: .*ECONNREFUSED/);
});

test('When HTTPS_PROXY is set, then a lookup at an https:// space goes through a CONNECT tunnel', async () => {
  const message = target();
  const before = secure.requests.length;
  const result = await lookupWith(secure.url, { HTTPS_PROXY: egress.url }).lookup(message);

  expect(result).toEqual({ kind: 'found', answer: { sid: message.id, status: 'delivered' } });
  expect(secure.requests.slice(before)).toEqual([`GET ${lookupPath(message)}`]);
  expect(egress.requests).toEqual([
    { line: `CONNECT localhost:${secure.port}`, proxyAuthorization: undefined },
  ]);
});

test.each([
  ['http', () => plainUrl, { HTTP_PROXY: '', NO_PROXY: '127.0.0.1' }],
  ['https', () => secure.url, { HTTPS_PROXY: '', NO_PROXY: 'localhost' }],
])('When NO_PROXY names the %s space, then lookups go direct', async (_, spaceUrl, env) => {
  const proxied = Object.fromEntries(
    Object.entries(env).map(([name, value]) => [name, value === '' ? egress.url : value]),
  );
  const result = await lookupWith(spaceUrl(), proxied).lookup(target());
  expect(result).toMatchObject({ kind: 'found' });
  expect(egress.requests).toEqual([]);
});

test('When no proxy variable is set, then lookups go direct', async () => {
  expect(await lookupWith(plainUrl, {}).lookup(target())).toMatchObject({ kind: 'found' });
  expect(egress.requests).toEqual([]);
});
