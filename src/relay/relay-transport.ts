import http from 'node:http';
import https from 'node:https';
import { urlToHttpOptions } from 'node:url';
import { answerRetryAfter } from '../http/retry-after';
import { addressGuard, urlProblem } from './address-policy';
import type { DestinationPolicy } from './address-policy';
import type { SearchList } from './relay-dns';
import type { AttemptResult } from './retry-policy';
import type { RelayRequest } from './relay-request';
import { AddressRefusedError, createSafeAgents } from './safe-agent';
import type { LookupFunction } from './safe-agent';

/**
 * The relay's one piece of network I/O: send a request, say what came of it. No redirect is
 * ever followed (Node's http never does), the whole exchange is bounded by `timeoutMs` (the
 * answer is its status line; its body is read to a bound, then dropped), and every connection
 * goes through the address-checking agents.
 */
export interface RelayTransport {
  /**
   * Resolves with the answer (its status line); `onFree` is called once the connection is free
   * for another request to the host — the answer's body read or dropped, the connection closed
   * — or at once when no request was made. The two differ when an app answers at once and then
   * streams its body: a slot given back at the status line would start the next relay to that
   * host waiting in the agent for a socket, its time running out before it is sent.
   */
  send(request: RelayRequest, onFree?: () => void): Promise<AttemptResult>;
  close(): void;
}

export interface TransportOptions extends DestinationPolicy {
  timeoutMs: number;
  /** Sockets per host (RELAY_HOST_CONCURRENCY). */
  maxSockets: number;
  /** DNS resolution; tests give names the addresses they need. */
  lookup?: LookupFunction;
  /** Tests: name servers to ask instead of resolv.conf's (relay-dns.ts). */
  dnsServers?: readonly string[];
  /** Tests: a hosts file instead of /etc/hosts (relay-dns.ts). */
  hostsFile?: string;
  /** Tests: a search list and ndots instead of resolv.conf's (relay-dns.ts). */
  dnsSearch?: SearchList;
}

export function createRelayTransport(options: TransportOptions): RelayTransport {
  const guard = addressGuard(options.allowedNetworks);
  const agents = createSafeAgents(guard, {
    maxSockets: options.maxSockets,
    // Half the attempt: a name server answers in milliseconds or not at all, and the rest is
    // the app's to connect and answer in.
    resolveTimeoutMs: Math.max(1, Math.floor(options.timeoutMs / 2)),
    ...(options.lookup && { lookup: options.lookup }),
    ...(options.dnsServers && { dnsServers: options.dnsServers }),
    ...(options.hostsFile && { hostsFile: options.hostsFile }),
    ...(options.dnsSearch && { dnsSearch: options.dnsSearch }),
  });
  return {
    async send(request, onFree) {
      const problem = urlProblem(request.url, options, guard);
      if (problem) {
        onFree?.();
        return { kind: 'refused', reason: problem };
      }
      return exchange(request, options.timeoutMs, agents, onFree);
    },
    close: () => agents.destroy(),
  };
}

/**
 * Bytes of an answer's body read (and thrown away) so its connection can be reused; past this
 * the connection is closed instead: a huge body costs nothing but the socket.
 */
const MAX_ANSWER_BODY_BYTES = 64 * 1024;
/**
 * Pieces of that body read: Node hands each chunk of a chunked answer to JavaScript on its
 * own, so an app answering 64 KiB in 1-byte chunks held the event loop for each socket read of
 * them (the listeners bound a request body the same way: src/http/listener.ts).
 */
const MAX_ANSWER_BODY_PIECES = 1_024;

/**
 * The path and query to request: as the URL was written, so the app is called at the URL the
 * relay signed (relay-request.ts signs it as given, as SignalWire does) — WHATWG's parser
 * rewrites `'` to `%27`, resolves `/a/../b`, and more. Only where HTTP cannot carry it as written
 * (non-ASCII, or no `/` after the host) is the parser's spelling sent.
 */
export function requestTarget(written: string, url: URL): string {
  const parsed = `${url.pathname}${url.search}`;
  // The host starts after `scheme:` and every `/` or `\` that follows, as WHATWG reads an
  // http(s) URL (`http:///host/p` is host `host`, path `/p`), and ends at the path, query,
  // fragment or a `\`.
  const authority = /^[a-z][a-z0-9+.-]*:[/\\]*[^/?#\\]*/i.exec(written);
  if (!authority) return parsed;
  let target = written.slice(authority[0].length);
  const hash = target.indexOf('#');
  if (hash !== -1) target = target.slice(0, hash);
  if (target === '' || target.startsWith('?')) target = `/${target}`;
  // Printable ASCII only: Node sends anything above as one byte per character (Latin-1).
  return target.startsWith('/') && /^[\x21-\x7e]*$/.test(target) ? target : parsed;
}

function exchange(
  request: RelayRequest,
  timeoutMs: number,
  agents: { http: http.Agent; https: https.Agent },
  onFree?: () => void,
): Promise<AttemptResult> {
  return new Promise((resolve) => {
    const url = new URL(request.url);
    const client = url.protocol === 'https:' ? https : http;
    const headers = { ...request.headers };
    if (request.body) headers['content-length'] = String(request.body.length);
    let settled = false;
    const settle = (result: AttemptResult): void => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const req = client.request({
      ...urlToHttpOptions(url),
      path: requestTarget(request.url, url),
      method: request.method,
      headers,
      agent: url.protocol === 'https:' ? agents.https : agents.http,
    });
    // Bounds the whole exchange, the body of the answer included: a connection still busy
    // when it runs out is closed.
    const timer = setTimeout(() => {
      settle({ kind: 'failed', error: `no answer within ${timeoutMs} ms` });
      req.destroy();
    }, timeoutMs);
    // The request is done (its answer read whole, the socket back in the agent's pool) or its
    // connection is gone: either way the host's connection is free. Always within timeoutMs.
    req.on('close', () => {
      clearTimeout(timer);
      onFree?.();
      // Closed without an answer or an error: a 101 (an upgrade) ends the exchange so, and
      // without this the attempt would never end, holding its host's slot and the worker's
      // room for good.
      settle({ kind: 'failed', error: 'the connection closed without an answer' });
    });
    // A switch of protocols is no answer to a callback: the app's status, not delivered, and
    // the socket (handed over to whoever takes the upgrade) is closed.
    req.on('upgrade', (res, socket) => {
      settle({ kind: 'answered', status: res.statusCode ?? 0 });
      socket.destroy();
    });
    req.on('response', (res) => {
      // The status line is the app's answer (DESIGN §10: a 2xx within RELAY_TIMEOUT_MS is
      // delivered). Waiting for the body's end too made an app that answered 200 at once but
      // streamed a slow or endless body get the same callback again and again.
      settle(answered(res));
      // The body is not needed; reading it lets the socket be reused.
      let read = 0;
      let pieces = 0;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > MAX_ANSWER_BODY_BYTES || ++pieces > MAX_ANSWER_BODY_PIECES) req.destroy();
      });
      res.on('error', () => undefined);
      res.on('end', () => clearTimeout(timer));
    });
    req.on('error', (error) => {
      if (error instanceof AddressRefusedError) settle({ kind: 'refused', reason: error.message });
      else settle({ kind: 'failed', error: describe(error) });
    });
    req.end(request.body ?? undefined);
  });
}

/**
 * The app's answer: its status, and its Retry-After (retry-policy.ts decides whether it
 * counts). An HTTP-date is read against the answer's own Date where it has one, so an app
 * whose clock is off still gets the wait it asked for.
 */
function answered(res: http.IncomingMessage): AttemptResult {
  const status = res.statusCode ?? 0;
  const header = res.headers['retry-after'];
  if (header === undefined) return { kind: 'answered', status };
  const retryAfterMs = answerRetryAfter(header, res.headers.date);
  return retryAfterMs === undefined
    ? { kind: 'answered', status }
    : { kind: 'answered', status, retryAfterMs };
}

function describe(error: Error): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? `${code}: ${error.message}` : error.message;
}
