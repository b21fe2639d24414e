import type { Config } from '../config';

/**
 * The send proxy's way to SignalWire: one POST, answered with the upstream's status, selected
 * headers and exact body bytes, or with why there was no answer. An interface so tests (and
 * main.ts with its in-process simulator) choose the upstream through the same door.
 */

/** What an upstream call came to: its HTTP status, or why there was none (metrics label). */
export type UpstreamStatus = number | UpstreamFailure;
export type UpstreamFailure = 'timeout' | 'unreachable';

export interface UpstreamRequest {
  /** Path and query as the caller sent them; the space URL supplies scheme and host. */
  path: string;
  headers: Readonly<Record<string, string>>;
  body: string;
}

export interface UpstreamResponse {
  status: number;
  /** Only the headers a caller needs back (see RETURNED_HEADERS), lower-case names. */
  headers: Record<string, string>;
  /** The exact bytes SignalWire answered (after transfer decoding). */
  body: Buffer;
}

export type UpstreamResult =
  | { ok: true; response: UpstreamResponse }
  | { ok: false; failure: UpstreamFailure; error: unknown };

export interface SignalWireClient {
  /** Where requests go, for logs; never carries credentials. */
  readonly baseUrl: string;
  post(request: UpstreamRequest): Promise<UpstreamResult>;
}

/**
 * Returned to the caller with the body: its type, and what a client acts on (back-off after a
 * 429, the auth challenge of a 401, the target of a redirect, which is not followed: following
 * it would carry the caller's credentials to wherever it points).
 */
const RETURNED_HEADERS = ['content-type', 'retry-after', 'www-authenticate', 'location'];

export interface SignalWireClientOptions {
  /** The space URL, e.g. `https://example.signalwire.com` (no trailing slash). */
  baseUrl: string;
  /** Covers the whole exchange, body included (SIGNALWIRE_TIMEOUT_MS). */
  timeoutMs: number;
  fetch?: typeof fetch;
}

export function createSignalWireClient(options: SignalWireClientOptions): SignalWireClient {
  const { baseUrl, timeoutMs } = options;
  const fetchImpl = options.fetch ?? fetch;
  return {
    baseUrl,
    async post(request) {
      const signal = AbortSignal.timeout(timeoutMs);
      try {
        const res = await fetchImpl(`${baseUrl}${request.path}`, {
          method: 'POST',
          headers: request.headers,
          body: request.body,
          redirect: 'manual',
          signal,
        });
        const body = Buffer.from(await res.arrayBuffer());
        const headers: Record<string, string> = {};
        for (const name of RETURNED_HEADERS) {
          const value = res.headers.get(name);
          if (value !== null) headers[name] = value;
        }
        return { ok: true, response: { status: res.status, headers, body } };
      } catch (error) {
        // The signal tells a timeout (connect, headers or body) from every other failure.
        return { ok: false, failure: signal.aborted ? 'timeout' : 'unreachable', error };
      }
    },
  };
}

/** The client for SIGNALWIRE_SPACE_URL; without one every send fails as unreachable. */
export function signalWireClientFor(config: Config): SignalWireClient {
  if (config.signalwireSpaceUrl) {
    return createSignalWireClient({
      baseUrl: config.signalwireSpaceUrl,
      timeoutMs: config.signalwireTimeoutMs,
    });
  }
  // main.ts passes the in-process simulator's client instead; this only serves an app built
  // without either, which must not crash at start-up over a route it may never use.
  return {
    baseUrl: '(not configured)',
    async post() {
      return {
        ok: false,
        failure: 'unreachable',
        error: new Error('SIGNALWIRE_SPACE_URL is not set and no upstream was given'),
      };
    },
  };
}
