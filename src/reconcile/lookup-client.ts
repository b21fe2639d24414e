import { ProxyAgent } from 'undici';
import type { SignalwireCredential } from '../config';
import { answerRetryAfter } from '../http/retry-after';
import type { Api } from '../messages/statuses';
import { basicAuthHeader } from '../signalwire/basic-auth';

/**
 * Looking a message up at SignalWire (DESIGN §11, SIGNALWIRE.md "Callback delivery and
 * looking a message up"): compatibility `GET /api/laml/2010-04-01/Accounts/{project}/
 * Messages/{sid}.json`, native `GET /api/messaging/logs/{id}` (the native API has no GET for
 * a message), with the project's own REST credentials. The sweep's only network I/O.
 */
export type LookupResult =
  | { kind: 'found'; answer: Record<string, unknown> }
  | { kind: 'not_found' }
  | { kind: 'unauthorized' }
  | { kind: 'no_credentials' }
  | {
      kind: 'failed';
      error: string;
      /**
       * SignalWire is overloaded or unavailable (408, 429, 5xx, no whole answer): the whole
       * sweep of this replica backs off, not only this message, and the message's step is
       * tried again (sweep-policy.ts). False: SignalWire answered, and asking again would get
       * the same answer (another 4xx, a redirect, no message resource in it): the step is done.
       */
      unavailable?: boolean;
      /** Its Retry-After, when it gave one. */
      retryAfterMs?: number;
    };

export interface LookupTarget {
  id: string;
  api: Api;
  projectId: string;
}

export interface MessageLookup {
  lookup(target: LookupTarget): Promise<LookupResult>;
}

/**
 * The lookup's path. `account`: the project as the operator wrote it in SIGNALWIRE_CREDENTIALS
 * (config.ts), which also names it in the Basic username; `target.projectId` is the lower-case
 * id the message is stored under.
 */
export function lookupPath(target: LookupTarget, account = target.projectId): string {
  const id = encodeURIComponent(target.id);
  return target.api === 'cxml'
    ? `/api/laml/2010-04-01/Accounts/${encodeURIComponent(account)}/Messages/${id}.json`
    : `/api/messaging/logs/${id}`;
}

export function createMessageLookup(options: {
  baseUrl: string;
  /** Lower-case project id → its credentials (config.ts SIGNALWIRE_CREDENTIALS). */
  credentials: ReadonlyMap<string, SignalwireCredential>;
  timeoutMs: number;
  /** The forward proxy to reach SignalWire through (signalwire/egress-proxy.ts). */
  proxy?: URL | undefined;
}): MessageLookup {
  const dispatcher = options.proxy && proxyDispatcher(new URL(options.baseUrl), options.proxy);
  return {
    async lookup(target) {
      const own = options.credentials.get(target.projectId);
      if (own === undefined) return { kind: 'no_credentials' };
      // Upstream, the project as the operator wrote it: SignalWire's rules on its case are not
      // known, and the simulator holds the path's account and the username to it exactly.
      const account = own.projectIdAsWritten;
      let res: Response;
      try {
        res = await fetch(`${options.baseUrl}${lookupPath(target, account)}`, {
          headers: {
            authorization: basicAuthHeader(account, own.token),
            accept: 'application/json',
          },
          redirect: 'manual',
          signal: AbortSignal.timeout(options.timeoutMs),
          ...(dispatcher && { dispatcher }),
        });
      } catch (error) {
        return { kind: 'failed', error: fetchFailure(error), unavailable: true };
      }
      // undefined: the answer broke off (the timeout, a reset), which is no answer.
      const text = await readAtMost(res, MAX_ANSWER_BYTES).catch(() => undefined);
      if (res.status === 404) return { kind: 'not_found' };
      if (res.status === 401 || res.status === 403) return { kind: 'unauthorized' };
      if (res.status < 200 || res.status >= 300) {
        const retryAfterMs = answerRetryAfter(
          res.headers.get('retry-after'),
          res.headers.get('date'),
        );
        return {
          kind: 'failed',
          error: `HTTP ${res.status}`,
          unavailable: res.status === 408 || res.status === 429 || res.status >= 500,
          ...(retryAfterMs !== undefined && { retryAfterMs }),
        };
      }
      if (text === undefined) {
        return { kind: 'failed', error: 'the answer broke off', unavailable: true };
      }
      if (text === null) {
        return { kind: 'failed', error: 'the answer is too large', unavailable: false };
      }
      try {
        const answer: unknown = JSON.parse(text);
        if (typeof answer === 'object' && answer !== null && !Array.isArray(answer)) {
          return { kind: 'found', answer: answer as Record<string, unknown> };
        }
      } catch {
        // fall through
      }
      return { kind: 'failed', error: 'the answer is not a JSON object', unavailable: false };
    },
  };
}

/**
 * Why a fetch failed: its message ("fetch failed") and its cause's, which says what went wrong
 * (ECONNREFUSED, a proxy's 407, a timeout). Neither holds the proxy's credentials.
 */
function fetchFailure(error: unknown): string {
  const message = messageOf(error) ?? String(error);
  const cause = messageOf((error as { cause?: unknown } | null)?.cause);
  return cause && cause !== message ? `${message}: ${cause}` : message;
}

/** An error's message, by its shape: fetch's errors may come from another realm. */
function messageOf(value: unknown): string | undefined {
  const message = (value as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' ? message : undefined;
}

/**
 * undici's own, which the global fetch takes (undici 7 speaks the handler interface of both
 * Node 20's bundled undici 6 and Node 24's undici 7). Like the send proxy's agent
 * (proxy/signalwire-client.ts): https through a CONNECT tunnel, plain http as absolute-URI
 * requests; undici tunnels both unless told.
 */
function proxyDispatcher(target: URL, proxy: URL): RequestInit['dispatcher'] {
  // The credentials as the send proxy's agent and curl send them: also a user name alone
  // (undici would send none unless both parts are there).
  const bare = new URL(proxy.href);
  bare.username = '';
  bare.password = '';
  const credentials =
    proxy.username || proxy.password
      ? `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`
      : undefined;
  const agent = new ProxyAgent({
    uri: bare.href,
    proxyTunnel: target.protocol === 'https:',
    ...(credentials && { token: `Basic ${Buffer.from(credentials).toString('base64')}` }),
  });
  // Only the types differ: @types/node 20 describes its bundled undici 6 (FormData and all).
  return agent as unknown as RequestInit['dispatcher'];
}

/**
 * A message resource or log entry is a few KiB: an answer past this is not one, and reading it
 * whole (a gateway's endless or huge body) would hold it all in memory.
 */
export const MAX_ANSWER_BYTES = 1024 * 1024;

/** The body as text, or null once it passes `limit` bytes (the rest is not read). */
async function readAtMost(res: Response, limit: number): Promise<string | null> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
