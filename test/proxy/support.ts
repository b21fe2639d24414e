import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, RequestListener, Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo, Server as TcpServer, Socket } from 'node:net';
import { RestClient } from '@signalwire/compatibility-api';
import request from 'supertest';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/** Servers on real ports for the proxy and end-to-end tests; each one closes cleanly. */

export interface Listening {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Listens on a free loopback port before the handler exists: the service's PUBLIC_BASE_URL
 * must name the receiver's port, and the app is built from that configuration.
 */
export async function listenFirst(): Promise<Listening & { use(handler: RequestListener): void }> {
  let handler: RequestListener | undefined;
  const server = createServer((req, res) => {
    if (handler) handler(req, res);
    else res.writeHead(503).end();
  });
  const listening = await listenServer(server);
  return {
    ...listening,
    use(h) {
      handler = h;
    },
  };
}

export function listen(handler: RequestListener): Promise<Listening> {
  return listenServer(createServer(handler));
}

function listenServer(server: Server): Promise<Listening> {
  // Hanging requests (the timeout tests) and idle keep-alive sockets both go on close.
  return listenLocally(server, () => server.closeAllConnections());
}

/** Listens on a free loopback port; close() stops listening and drops what is still open. */
function listenLocally(
  server: Server | TcpServer,
  dropConnections: () => void,
): Promise<Listening> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            dropConnections();
          }),
      });
    });
  });
}

/**
 * A bare TCP listener: what a server that never speaks HTTP (or TLS) does to the proxy's
 * connection, e.g. closing it at the TLS ClientHello or staying silent.
 */
export function listenTcp(onSocket: (socket: Socket) => void): Promise<Listening> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onSocket(socket);
  });
  return listenLocally(server, () => {
    for (const socket of sockets) socket.destroy();
  });
}

/** A port nothing listens on: bound, then released. */
export async function closedPort(): Promise<number> {
  const server = await listen((_req, res) => res.end());
  await server.close();
  return server.port;
}

export interface TappedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** What the tap answered (forwarded or canned), as sent. */
  response?: {
    status: number;
    contentType: string | null;
    /** Every header the tap answered with (content-type among them). */
    headers: Record<string, string>;
    body: Buffer;
  };
}

export interface CannedResponse {
  status: number;
  headers?: Record<string, string>;
  body: string | Buffer;
}

/**
 * forward: to that base URL; a function: canned answers (or one later: a SignalWire slow to
 * answer); 'hang': never answers; 'drop':
 * closes the connection once the whole request is in, without an answer (a reset, a load
 * balancer's idle close, a deploy: SignalWire may have acted on it).
 */
export type TapBehaviour =
  | { forwardTo: string }
  | ((req: TappedRequest) => CannedResponse | Promise<CannedResponse>)
  | 'hang'
  | 'drop';

export interface UpstreamTap extends Listening {
  /** Every request that reached the upstream, in order. */
  requests: TappedRequest[];
}

/**
 * A stand-in for SignalWire that records every request byte for byte: in front of the
 * simulator it shows what the proxy forwarded (and the answer it got); alone it answers
 * whatever a test needs, or nothing at all.
 */
export async function startUpstreamTap(behaviour: TapBehaviour): Promise<UpstreamTap> {
  const requests: TappedRequest[] = [];
  const server = await listen((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const tapped: TappedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(tapped);
      if (behaviour === 'hang') return;
      if (behaviour === 'drop') {
        req.socket.destroy();
        return;
      }
      void answer(behaviour, tapped).then(
        (response) => {
          tapped.response = response;
          res.writeHead(response.status, response.headers);
          res.end(response.body);
        },
        () => res.writeHead(599).end(),
      );
    });
  });
  return { ...server, requests };
}

async function answer(
  behaviour: Exclude<TapBehaviour, 'hang' | 'drop'>,
  req: TappedRequest,
): Promise<NonNullable<TappedRequest['response']>> {
  if (typeof behaviour === 'function') {
    const canned = await behaviour(req);
    return {
      status: canned.status,
      contentType: canned.headers?.['content-type'] ?? null,
      headers: canned.headers ?? {},
      body: Buffer.from(canned.body),
    };
  }
  const headers: Record<string, string> = {};
  for (const name of ['authorization', 'content-type', 'accept', 'user-agent']) {
    const value = req.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  const res = await fetch(`${behaviour.forwardTo}${req.path}`, {
    method: req.method,
    headers,
    // fetch refuses a body, even an empty one, on a GET or HEAD.
    body: ['GET', 'HEAD'].includes(req.method) ? undefined : req.body,
  });
  const contentType = res.headers.get('content-type');
  return {
    status: res.status,
    contentType,
    headers: contentType === null ? {} : { 'content-type': contentType },
    body: Buffer.from(await res.arrayBuffer()),
  };
}

/**
 * The official compatibility SDK with its space URL pointed at `baseUrl`, changing nothing
 * else. RestClient hard-codes `https://${signalwireSpaceUrl}`; its `api` domain reads
 * `baseUrl` on every request, so overriding that is how a plain-http local URL is reached.
 */
export function sdkClient(baseUrl: string, projectId: string, token: string) {
  const client = RestClient(projectId, token, { signalwireSpaceUrl: new URL(baseUrl).host });
  (client.api as unknown as { baseUrl: string }).baseUrl = baseUrl;
  return client;
}

/** Form fields from a raw `application/x-www-form-urlencoded` body, order and repeats kept. */
export function formPairs(body: string): Array<[string, string]> {
  return [...new URLSearchParams(body)];
}

/**
 * A form body exactly as `curl --data-urlencode name=value …` builds it: each value
 * percent-encoded (space as %20), pairs joined with `&`.
 */
export function curlDataUrlencode(pairs: ReadonlyArray<readonly [string, string]>): string {
  return pairs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
}

export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * One request with the target exactly as given — `..`, `%2E`, `//`, absolute form — which
 * supertest's URL handling would normalize before sending.
 */
export function rawRequest(
  port: number,
  options: {
    method: string;
    path: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
  },
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: options.method,
      path: options.path,
      headers: options.headers,
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The service's internal listener on a real port, with a tap playing SignalWire behind it. */
export interface TappedProxy {
  tap: UpstreamTap;
  t: TestApp;
  proxy: Listening;
  close(): Promise<void>;
}

export async function startTappedProxy(
  behaviour: TapBehaviour,
  env: Record<string, string> = {},
  options?: Parameters<typeof createTestApp>[1],
): Promise<TappedProxy> {
  const tap = await startUpstreamTap(behaviour);
  const t = await createTestApp({ SIGNALWIRE_SPACE_URL: tap.url, ...env }, options);
  const proxy = await listen(t.internalApp);
  return {
    tap,
    t,
    proxy,
    async close() {
      await proxy.close();
      await t.close();
      await tap.close();
    },
  };
}

/**
 * SignalWire's compatibility message resource for `sid` of `project`, as its create, fetch and
 * update answer it (seeds: the Messages resource), holding `body`.
 */
export function compatMessageResource(project: string, sid: string, body: string) {
  const uri = `/api/laml/2010-04-01/Accounts/${project}/Messages/${sid}`;
  return {
    account_sid: project,
    api_version: '2010-04-01',
    body,
    num_segments: 1,
    num_media: 0,
    date_created: 'Mon, 13 Aug 2018 21:38:46 +0000',
    date_sent: null,
    date_updated: 'Mon, 13 Aug 2018 21:38:46 +0000',
    direction: 'outbound-api',
    error_code: null,
    error_message: null,
    from: '+15551234567',
    price: null,
    price_unit: 'USD',
    sid,
    status: 'queued',
    to: '+15557654321',
    messaging_service_sid: null,
    uri,
    subresource_uris: { media: `${uri}/Media` },
  };
}

/** SignalWire's compatibility answer for a message it does not have (gone, or never there). */
export const compatNotFound: CannedResponse = {
  status: 404,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    code: 20404,
    message: 'The requested resource was not found',
    more_info: 'https://developer.signalwire.com',
    status: 404,
  }),
};

/** An SDK call's outcome: 'ok', or the HTTP status it failed with. */
export function outcomeOf(call: Promise<unknown>): Promise<'ok' | number | undefined> {
  return call.then(
    () => 'ok' as const,
    (e: { status?: number }) => e.status,
  );
}

/**
 * What the redaction tests stand on: startTappedProxy storing texts (STORE_BODY=true), its tap
 * answering as `answer` says when each request comes (a test sets it before its calls), and an
 * app, `project` with `token`, holding the official SDK client pointed at the proxy.
 */
export interface RedactionStack extends TappedProxy {
  /** How the tap answers from now on; 503 until a test says. */
  answer: (req: TappedRequest) => CannedResponse | Promise<CannedResponse>;
  client: ReturnType<typeof sdkClient>;
  /**
   * The app sends `text` through the SDK and the proxy, SignalWire answering 201 with it
   * (compatMessageResource): the new message's sid. SignalWire has then accepted the app's
   * credentials (src/proxy/accepted-credentials.ts).
   */
  send(text: string): Promise<string>;
  /** The message as the query API shows it. */
  stored(sid: string): Promise<request.Response>;
}

export async function startRedactionStack(
  app: { project: string; token: string },
  env: Record<string, string> = {},
  options?: Parameters<typeof createTestApp>[1],
): Promise<RedactionStack> {
  const tapped = await startTappedProxy(
    (req) => stack.answer(req),
    { STORE_BODY: 'true', ...env },
    options,
  );
  const client = sdkClient(tapped.proxy.url, app.project, app.token);
  const stack: RedactionStack = {
    ...tapped,
    answer: () => ({ status: 503, body: '' }),
    client,
    async send(text) {
      const sid = randomUUID();
      stack.answer = () => ({
        status: 201,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(compatMessageResource(app.project, sid, text)),
      });
      await client.messages.create({ to: '+15557654321', from: '+15551234567', body: text });
      return sid;
    },
    stored: async (sid) =>
      await request(tapped.t.internalApp)
        .get(`/v1/messages/${sid}`)
        .set('Authorization', `Bearer ${TEST_API_TOKEN}`),
  };
  return stack;
}
