import { createServerClock } from './server-clock';
import type { ServerClock } from './server-clock';
import type { FeedPage, Message, MessagePage, RelayPage, Stats } from './wire';

/** A non-2xx answer of the query API; `retryAfterMs` from its Retry-After (429, 503). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/**
 * The query API did not answer in time: no status, no body. Said like a lost connection
 * (answeredStatus is undefined), and backed off like one.
 */
export class NoAnswerError extends Error {
  constructor(readonly afterMs: number) {
    super(`the service did not answer within ${Math.round(afterMs / 1000)} s`);
  }
}

/**
 * How long a panel read or a lookup may take, body included. A service that stops answering
 * without closing the connection (a pod black-holed behind a kept-alive connection, a hung
 * proxy) fails no request: without a deadline the page said "Live" over figures that no longer
 * moved. The query API gives up on a read after 5 s (its statement timeout); 15 s leaves room
 * for a slow network and the read gate's queue.
 */
export const READ_DEADLINE_MS = 15_000;
/** A long-poll may take its `wait` and this much more before it counts as no answer. */
export const FEED_DEADLINE_GRACE_MS = 10_000;

/** Events asked for per feed page; a page this full says more are waiting (live.ts). */
export const FEED_PAGE_LIMIT = 500;

/** Answers kept for revalidation: the page polls six URLs; a few more for the moving windows. */
const REMEMBERED_MAX = 16;

/**
 * The token cannot be put in an Authorization header at all (a character beyond U+00FF, a
 * line break): Headers.set throws a TypeError before any request leaves. Taken for a network
 * failure, it made the page say "Connection lost, retrying…" for ever, the token kept, while
 * the service was up; it is a wrong token, and said like one the service refused.
 */
export class UnsendableTokenError extends Error {
  constructor() {
    super('the API token holds a character an HTTP header cannot carry');
  }
}

/** The token is no good: the service refused it (401), or it cannot even be sent. */
export const isUnauthorized = (error: unknown): boolean =>
  (error instanceof ApiError && error.status === 401) || error instanceof UnsendableTokenError;

/**
 * The service answered "not now": 503 (the read gate full, a read timed out, the database
 * away) or 429 (the token's budget spent). Both say when to ask again (Retry-After), and the
 * same request may then succeed; any other answer (400, 404, 500) would come back the same.
 */
export const isBusy = (error: unknown): error is ApiError =>
  error instanceof ApiError && (error.status === 503 || error.status === 429);

/** The HTTP status the service answered with, or undefined when no answer came (network). */
export const answeredStatus = (error: unknown): number | undefined =>
  error instanceof ApiError ? error.status : undefined;

export interface Answer<T> {
  body: T;
  /** False when the server answered 304: the body is the one it gave before. */
  changed: boolean;
}

export interface ApiClient {
  stats(query: Record<string, string>): Promise<Answer<Stats>>;
  messages(query: Record<string, string>): Promise<Answer<MessagePage>>;
  /** null when the service knows no such message. */
  message(id: string, signal?: AbortSignal): Promise<Message | null>;
  deadRelays(): Promise<Answer<RelayPage>>;
  /** One page of the change feed; `waitSeconds` > 0 long-polls. */
  events(after: string, waitSeconds: number, signal?: AbortSignal): Promise<FeedPage>;
  /** The service's clock as its answers tell it (server-clock.ts), as Date.now() would. */
  serverNow(): number;
}

/**
 * The query API on this page's own origin, with the tab's bearer token. Polled answers are
 * revalidated with their ETag (If-None-Match): an unchanged answer costs a 304 and no body.
 */
export function createApiClient(
  token: string,
  fetchImpl: typeof fetch = fetch,
  clock: ServerClock = createServerClock(),
): ApiClient {
  const remembered = new Map<string, { etag: string; body: unknown }>();

  async function request(path: string, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    try {
      headers.set('Authorization', `Bearer ${token}`);
    } catch {
      // A TypeError, which only the token can cause: the header's name and `Bearer ` are fixed.
      throw new UnsendableTokenError();
    }
    headers.set('Accept', 'application/json');
    // no-store: the page keeps its own copies; the HTTP cache would only add another.
    // (A cast: Node's RequestInit, which the tests compile against, has no `cache`.)
    const res = await clock.timed(() =>
      fetchImpl(path, { ...init, headers, cache: 'no-store' } as RequestInit),
    );
    if (res.status === 304 || res.ok || res.status === 404) return res;
    throw new ApiError(res.status, await errorText(res), retryAfterMs(res));
  }

  async function revalidated<T>(path: string, signal: AbortSignal): Promise<Answer<T>> {
    const known = remembered.get(path);
    const res = await request(path, {
      signal,
      ...(known && { headers: { 'If-None-Match': known.etag } }),
    });
    if (res.status === 304 && known) {
      // Used again: kept last in line. The lists that rarely change would otherwise be the
      // oldest entries while the moving stats windows add two a minute, and every few minutes
      // be dropped, downloaded whole and drawn again though nothing changed.
      remembered.delete(path);
      remembered.set(path, known);
      return { body: known.body as T, changed: false };
    }
    if (!res.ok) throw new ApiError(res.status, await errorText(res));
    const body = (await res.json()) as T;
    const etag = res.headers.get('ETag');
    if (etag) {
      // The stats windows move every minute: only the answers used lately are worth keeping.
      remembered.delete(path);
      remembered.set(path, { etag, body });
      if (remembered.size > REMEMBERED_MAX) remembered.delete(remembered.keys().next().value!);
    }
    return { body, changed: true };
  }

  const read = <T>(path: string): Promise<Answer<T>> =>
    withDeadline(READ_DEADLINE_MS, undefined, (signal) => revalidated<T>(path, signal));

  return {
    stats: (query) => read(`/v1/stats?${new URLSearchParams(query)}`),
    messages: (query) => read(`/v1/messages?${new URLSearchParams(query)}`),
    deadRelays: () => read('/v1/relays?state=dead&limit=20'),
    async message(id, outer) {
      // `.` and `..` are dot segments however they are written (`%2e` too): the URL would ask
      // for the list (/v1/messages/) or /v1/ instead, and the page showed a list as a message.
      if (id === '.' || id === '..') return null;
      return withDeadline(READ_DEADLINE_MS, outer, async (signal) => {
        const res = await request(`/v1/messages/${encodeURIComponent(id)}`, { signal });
        if (res.status === 404) return null;
        return (await res.json()) as Message;
      });
    },
    events(after, waitSeconds, outer) {
      const query = new URLSearchParams({
        after,
        wait: String(waitSeconds),
        limit: String(FEED_PAGE_LIMIT),
      });
      const deadline = waitSeconds * 1000 + FEED_DEADLINE_GRACE_MS;
      return withDeadline(deadline, outer, async (signal) => {
        const res = await request(`/v1/events?${query}`, { signal });
        if (!res.ok) throw new ApiError(res.status, await errorText(res));
        return (await res.json()) as FeedPage;
      });
    },
    serverNow: clock.now,
  };
}

/**
 * Runs `send` with a signal that aborts when `outer` does or after `ms`, whichever comes first;
 * past the deadline it fails with NoAnswerError. The deadline covers the body too: an answer
 * whose headers came and whose body never does is no answer either. A timer, not
 * AbortSignal.timeout and AbortSignal.any: those are newer than the browsers the bundle is
 * built for (build-page.ts), and a timer runs on the page's clock, which the tests control.
 */
async function withDeadline<T>(
  ms: number,
  outer: AbortSignal | undefined,
  send: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const cancel = (): void => controller.abort(outer?.reason);
  if (outer?.aborted) cancel();
  outer?.addEventListener('abort', cancel);
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    controller.abort();
  }, ms);
  try {
    return await send(controller.signal);
  } catch (error) {
    throw late ? new NoAnswerError(ms) : error;
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', cancel);
  }
}

async function errorText(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { error?: { message?: string } };
    return body.error?.message ?? `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

function retryAfterMs(res: Response): number | undefined {
  const seconds = Number(res.headers.get('Retry-After'));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
}
