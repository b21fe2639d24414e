import http from 'node:http';
import https from 'node:https';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';
import type { Config } from '../config';
import { byteBudget } from '../http/byte-budget';
import type { ByteBudget } from '../http/byte-budget';
import { signalwireEgressProxy } from '../signalwire/egress-proxy';

/**
 * The proxy's way to SignalWire: a create answered in full, any other call answered as a
 * stream, or why there was no answer. An interface so tests (and main.ts with its in-process
 * simulator) choose the upstream through the same door.
 *
 * Node's http client, not fetch: what the caller is told — "not sent, safe to retry" or "the
 * outcome is unknown" — hangs on whether the request could have reached SignalWire, and fetch
 * reports every failure as one "fetch failed" whose causes overlap (an ECONNRESET can end a
 * TLS handshake or the wait for an answer). Here the socket's own connect event draws the line:
 * no request byte leaves before TCP (and TLS) is up.
 */

/** Why there was no answer. */
export type UpstreamFailure =
  /** No connection (refused, DNS, TLS handshake, none within the time): nothing was sent. */
  | 'unreachable'
  /** Connected, but no whole answer within SIGNALWIRE_TIMEOUT_MS: it may have been acted on. */
  | 'timeout'
  /** The connection failed once the request may have been written: it may have been acted on. */
  | 'interrupted';

/**
 * An upstream call's outcome as the metrics label it (metrics/metrics.ts): its HTTP status,
 * or why there was none. There `unreachable` means "no answer, and not for lack of time": an
 * interrupted exchange counts under it (the logs tell the two apart).
 */
export type UpstreamStatus = number | 'timeout' | 'unreachable';

export function metricLabel(failure: UpstreamFailure): 'timeout' | 'unreachable' {
  return failure === 'timeout' ? 'timeout' : 'unreachable';
}

export interface UpstreamRequest {
  method: string;
  /** Path and query only (upstream-target.ts); the space URL supplies scheme, host and port. */
  target: string;
  /** Lower-case names; content-length and accept-encoding are the client's own. */
  headers: Readonly<Record<string, string>>;
  body: Buffer;
  /**
   * The caller's: once it fires before the connection is up (TCP, and TLS for https), the
   * request is dropped unsent and the call fails as `unreachable`. Ignored once connected: by
   * then the request may be on its way, and its answer must be read and recorded — but for a
   * read (GET, HEAD, OPTIONS), which is dropped whenever it fires.
   */
  signal?: AbortSignal;
}

export interface UpstreamAnswer<B> {
  status: number;
  /** Only the headers a caller needs back (see RETURNED_HEADERS), lower-case names. */
  headers: Record<string, string>;
  body: B;
}

export type UpstreamResult<B> =
  { ok: true; response: UpstreamAnswer<B> } | { ok: false; failure: UpstreamFailure; error: Error };

export interface SignalWireClient {
  /** Where requests go, for logs; never carries credentials. */
  readonly baseUrl: string;
  /**
   * A create: the whole answer, content-decoded, at most MAX_ANSWER_BYTES, within the timeout
   * (the proxy reads it, rewrites it and records from it).
   */
  send(request: UpstreamRequest): Promise<UpstreamResult<Buffer>>;
  /**
   * Any other call: the answer's bytes as they come (a message list can be megabytes). The
   * timeout bounds the wait for the status line and then each silence of SignalWire's within
   * the body, not a pause of the reader's (see cutWhenSilent).
   */
  forward(request: UpstreamRequest): Promise<UpstreamResult<Readable>>;
}

/**
 * Returned to the caller with the body: its type, and what a client acts on (back-off after a
 * 429, the auth challenge of a 401, the target of a redirect, which is not followed: following
 * it would carry the caller's credentials to wherever it points).
 */
const RETURNED_HEADERS = ['content-type', 'retry-after', 'www-authenticate', 'location'];

/** A create's answer is one message resource, a few KiB: anything near this is not one. */
export const MAX_ANSWER_BYTES = 1024 * 1024;

/**
 * The bytes of create answers being read at once, across every send. Each answer is bounded
 * by MAX_ANSWER_BYTES, but nothing bounded how many were read together: a gateway in front of
 * SignalWire answering hundreds of slow sends with pages near that size held hundreds of MiB
 * (450 sends: 459 MB), past the pod's memory limit — every callback in flight lost with it.
 * Past this, an answer is cut as one too large is (502, the outcome unknown: the send went
 * out); real answers are a few KiB, so thousands fit.
 */
export const ANSWER_BYTES_IN_FLIGHT = 16 * 1024 * 1024;

/**
 * Idle keep-alive sockets are closed after this, below the usual load-balancer idle timeouts
 * (60 s on AWS ALB, 350 s on GCP), so a request is seldom written into a socket the other
 * side is closing; the agent also honours a server's own `Keep-Alive: timeout=` hint.
 */
const IDLE_SOCKET_MS = 4_000;

export interface SignalWireClientOptions {
  /** The space URL, e.g. `https://example.signalwire.com` (no trailing slash). */
  baseUrl: string;
  /** SIGNALWIRE_TIMEOUT_MS. */
  timeoutMs: number;
  /** The forward proxy to reach it through (signalwire/egress-proxy.ts); undefined: direct. */
  proxy?: URL | undefined;
  /** ANSWER_BYTES_IN_FLIGHT; tests lower it. */
  answerBytesInFlight?: number;
}

export function createSignalWireClient(options: SignalWireClientOptions): SignalWireClient {
  const { baseUrl, timeoutMs } = options;
  const answers = byteBudget(options.answerBytesInFlight ?? ANSWER_BYTES_IN_FLIGHT);
  const space = new URL(baseUrl);
  const secure = space.protocol === 'https:';
  const agent = upstreamAgent(secure, options.proxy);
  // Plain http through a proxy goes as absolute-URI requests: the proxy answers them itself
  // when it will not pass them on, and a 407 (Proxy Authentication Required) is only ever its.
  const proxiedPlain = options.proxy !== undefined && !secure;
  const origin = {
    protocol: space.protocol,
    // WHATWG keeps an IPv6 host in brackets; http.request wants the bare address.
    hostname: space.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: space.port === '' ? undefined : Number(space.port),
    // A space URL with a path (a gateway in front of SignalWire) keeps it in front.
    basePath: space.pathname.replace(/\/+$/, ''),
  };

  function exchange<B>(
    request: UpstreamRequest,
    returned: readonly string[],
    read: (res: IncomingMessage, req: ClientRequest) => Promise<B>,
  ): Promise<UpstreamResult<B>> {
    return new Promise((resolve) => {
      let connected = false;
      let settled = false;
      let req: ClientRequest | undefined;
      const settle = (result: UpstreamResult<B>): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      const failed = (error: Error, timedOut: boolean): void => {
        const failure = !connected ? 'unreachable' : timedOut ? 'timeout' : 'interrupted';
        settle({ ok: false, failure, error });
      };
      const timer = setTimeout(() => {
        const error = new Error(
          connected ? `no answer within ${timeoutMs} ms` : `no connection within ${timeoutMs} ms`,
        );
        failed(error, true);
        req?.destroy(error);
      }, timeoutMs);

      try {
        req = (secure ? https : http).request({
          protocol: origin.protocol,
          hostname: origin.hostname,
          port: origin.port,
          path: origin.basePath + request.target,
          method: request.method,
          headers: outgoingHeaders(request),
          agent,
        });
      } catch (error) {
        // Refused before any connection (an invalid header or path): nothing was sent.
        failed(asError(error), false);
        return;
      }
      const sent = req;
      dropUnsentOnAbort(sent, request.signal, () => connected);
      sent.on('socket', (socket) => {
        // A kept-alive socket is up already; a new one carries nothing before it connects.
        // Through a proxy, a plain socket comes connected (to the proxy, which passes on
        // whatever is written), and a TLS one once the tunnel is open, before its handshake
        // with SignalWire.
        if (sent.reusedSocket || (!secure && !socket.connecting)) connected = true;
        else socket.once(secure ? 'secureConnect' : 'connect', () => (connected = true));
      });
      sent.on('error', (error) => failed(error, false));
      let answered = false;
      // A switch of protocols is no answer to an API call; Node's client ends such an
      // exchange with neither a response nor an error, only `close`, which would leave the
      // caller waiting for the timeout.
      sent.on('upgrade', (res, socket) => {
        socket.destroy();
        failed(new Error(`SignalWire answered ${res.statusCode} (a switch of protocols)`), false);
      });
      sent.on('close', () => {
        if (!answered) failed(new Error('the connection closed without an answer'), false);
      });
      sent.on('response', (res) => {
        answered = true;
        const status = res.statusCode ?? 0;
        if (!connected) {
          // The forward proxy's own answer to CONNECT (403, 407, 502…), which https-proxy-agent
          // hands over as the response: the tunnel never opened, so nothing reached SignalWire.
          res.resume();
          failed(new Error(`the forward proxy refused the tunnel with ${status}`), false);
          return;
        }
        if (proxiedPlain && status === 407) {
          res.resume();
          failed(new Error('the forward proxy refused the request with 407'), false);
          return;
        }
        if (status < 200 || status > 599) {
          // No HTTP status a caller could be given (Express refuses one below 100): garbage,
          // after the request went out.
          sent.destroy();
          failed(new Error(`SignalWire answered with an invalid status ${status}`), false);
          return;
        }
        read(res, sent).then(
          (body) => {
            const headers = pick(res, returned);
            settle({ ok: true, response: { status: res.statusCode ?? 0, headers, body } });
          },
          (error: unknown) => {
            sent.destroy();
            failed(asError(error), false);
          },
        );
      });
      sent.end(request.body);
    });
  }

  return {
    baseUrl,
    send: (request) =>
      exchange(request, RETURNED_HEADERS, async (res) => {
        const body = await readAtMost(res, MAX_ANSWER_BYTES, answers);
        return decoded(body, res.headers['content-encoding']);
      }),
    // Its bytes pass as they came, so their coding (should a server ignore `identity`) too.
    forward: (request) =>
      exchange(request, [...RETURNED_HEADERS, 'content-encoding'], async (res, req) => {
        cutWhenSilent(req, res, timeoutMs);
        return res;
      }),
  };
}

/**
 * From here the caller is streamed to: SignalWire silent for `ms` while its body is being read
 * ends the exchange. The socket's idle timer measures that, but only while the answer flows:
 * a caller reading slowly has pipeline pause it (back-pressure), and then no byte arrives
 * because we stopped reading, not because SignalWire stalled. Counted, it cut off a 16 MiB
 * list whose caller paused past SIGNALWIRE_TIMEOUT_MS once the socket buffers between were
 * full. A caller that never reads again still holds the exchange only until the listener's
 * stalledTimeoutMs (src/http/listener.ts) cuts its connection, on which nothing moves either
 * way: that ends the pipeline, which destroys this answer and its socket.
 */
function cutWhenSilent(req: ClientRequest, res: IncomingMessage, ms: number): void {
  req.setTimeout(ms, () => req.destroy(new Error(`no data for ${ms} ms`)));
  // setTimeout re-arms the idle timer from now; 0 stops it. Neither adds a listener.
  res.on('pause', () => req.setTimeout(0));
  res.on('resume', () => req.setTimeout(ms));
}

/**
 * Keep-alive either way. Through a proxy, https goes through a CONNECT tunnel and plain http
 * as absolute-URI requests, as curl does (many proxies refuse CONNECT to any port but 443).
 */
function upstreamAgent(secure: boolean, proxy: URL | undefined): http.Agent {
  const options = { keepAlive: true, timeout: IDLE_SOCKET_MS };
  if (proxy)
    return secure ? new HttpsProxyAgent(proxy, options) : new HttpProxyAgent(proxy, options);
  return secure ? new https.Agent(options) : new http.Agent(options);
}

/**
 * A caller that gave up before SignalWire was reached counts the send as failed and may retry
 * it: the request, still waiting for its socket to connect, is destroyed before any byte of it
 * leaves (Node writes a request only once its socket is connected). A read (GET, HEAD,
 * OPTIONS) changes nothing at SignalWire: it is dropped whenever its caller goes, rather than
 * held until SignalWire answers.
 */
function dropUnsentOnAbort(
  req: ClientRequest,
  signal: AbortSignal | undefined,
  connected: () => boolean,
): void {
  if (signal === undefined) return;
  const safe = isSafeMethod(req.method);
  const drop = (): void => {
    if (safe) req.destroy(new Error('the caller went away'));
    else if (!connected()) {
      req.destroy(new Error('the caller went away before SignalWire was reached'));
    }
  };
  if (signal.aborted) {
    drop();
    return;
  }
  signal.addEventListener('abort', drop, { once: true });
  req.once('close', () => signal.removeEventListener('abort', drop));
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** A call that changes nothing at SignalWire: dropped whenever its caller goes. */
export function isSafeMethod(method: string): boolean {
  return SAFE_METHODS.has(method);
}

function outgoingHeaders(request: UpstreamRequest): Record<string, string> {
  const headers: Record<string, string> = { ...request.headers };
  // The answer's bytes are rewritten (creates) or passed on (the rest) as they are: ask for
  // them unencoded; decoded() and the forwarded content-encoding cover a server that ignores it.
  headers['accept-encoding'] = 'identity';
  if (request.body.length > 0 || !['GET', 'HEAD', 'DELETE', 'OPTIONS'].includes(request.method)) {
    headers['content-length'] = String(request.body.length);
  }
  return headers;
}

function pick(res: IncomingMessage, names: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of names) {
    const value = res.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  return headers;
}

/**
 * The whole body, or an error once it passes `limit` bytes or the answers being read together
 * would pass `budget` (then the exchange is cut). An answer alone in the budget may always
 * reach `limit`. Its bytes count until it has been read or cut.
 */
function readAtMost(res: IncomingMessage, limit: number, budget: ByteBudget): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      budget.give(size);
    };
    const fail = (error: Error): void => {
      release();
      reject(error);
      res.destroy();
    };
    res.on('data', (chunk: Buffer) => {
      if (released) return;
      if (size + chunk.length > limit) {
        fail(new Error(`the answer is larger than ${limit} bytes`));
        return;
      }
      if (!budget.fits(size, chunk.length)) {
        fail(new Error(`the answers being read hold ${budget.max} bytes already`));
        return;
      }
      size += chunk.length;
      budget.take(chunk.length);
      chunks.push(chunk);
    });
    res.on('end', () => {
      release();
      resolve(Buffer.concat(chunks));
    });
    res.on('error', (error) => {
      release();
      reject(error);
    });
    // Closed before the body's end (its length, or the last chunk): a cut-off answer.
    res.on('close', () => {
      release();
      if (!res.complete) reject(new Error('the answer was cut off'));
    });
  });
}

/**
 * A create's answer as text, whatever content coding a server applied despite `identity`:
 * its token is rewritten (answer-rewrite.ts) and must not slip out compressed.
 */
function decoded(body: Buffer, encoding: string | undefined): Buffer {
  const coding = (encoding ?? '').trim().toLowerCase();
  const limits = { maxOutputLength: MAX_ANSWER_BYTES };
  if (coding === '' || coding === 'identity') return body;
  if (coding === 'gzip' || coding === 'x-gzip' || coding === 'deflate') {
    return zlib.unzipSync(body, limits);
  }
  if (coding === 'br') return zlib.brotliDecompressSync(body, limits);
  throw new Error(`the answer has an unknown content-encoding: ${coding}`);
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** The client for SIGNALWIRE_SPACE_URL; without one every call fails as unreachable. */
export function signalWireClientFor(config: Config): SignalWireClient {
  if (config.signalwireSpaceUrl) {
    return createSignalWireClient({
      baseUrl: config.signalwireSpaceUrl,
      timeoutMs: config.signalwireTimeoutMs,
      proxy: signalwireEgressProxy(config),
    });
  }
  // main.ts passes the in-process simulator's client instead; this only serves an app built
  // without either, which must not crash at start-up over a route it may never use.
  const none = async () => ({
    ok: false as const,
    failure: 'unreachable' as const,
    error: new Error('SIGNALWIRE_SPACE_URL is not set and no upstream was given'),
  });
  return { baseUrl: '(not configured)', send: none, forward: none };
}
