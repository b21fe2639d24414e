import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { Request, RequestHandler } from 'express';
import { ipKeyGenerator } from 'express-rate-limit';
import { AppError } from '../errors';
import type { Logger } from '../logger';
import type { Sender } from '../metrics/metrics';

export interface RateLimitDeps {
  /** Requests allowed per key and minute, per replica (the counters live in memory). */
  perMinute: number;
  logger: Logger;
  /** Told about every refused request (metrics). */
  onLimited?: (req: Request) => void;
  /** Clients tracked at once (default MAX_TRACKED_CLIENTS): bounds the limiter's memory. */
  maxClients?: number;
}

/** A rate-limiting middleware that says how many clients it tracks (tests, diagnostics). */
export type RateLimiter = RequestHandler & { trackedClients(): number };

const WINDOW_MS = 60_000;

/**
 * Windows are timed on the monotonic clock: only their lengths matter, and a wall clock stepped
 * back (NTP, a resumed VM) would otherwise stretch a running window by the step — an hour's
 * Retry-After, SignalWire's address refused for that hour.
 */
const monotonicNow = (): number => performance.now();

/**
 * About 200 bytes each: 50,000 clients hold about 10 MB. SignalWire calls from a handful of
 * addresses and the query API has a handful of tokens; only an attacker spraying addresses
 * (IPv6 prefixes, or X-Forwarded-For with a TRUST_PROXY set too wide) gets near it.
 */
export const MAX_TRACKED_CLIENTS = 50_000;

/**
 * Per client address, for the public listener. `req.ip` is the real client behind the load
 * balancer only when TRUST_PROXY names the proxies in front of the service; IPv6 clients are
 * grouped by /56, since one host usually owns a whole prefix.
 */
export function publicRateLimit(deps: RateLimitDeps): RateLimiter {
  let warned = false;
  return limiter(deps, (req) => {
    if (!warned && req.headers['x-forwarded-for'] !== undefined && !req.app.get('trust proxy')) {
      warned = true;
      deps.logger.warn(
        'X-Forwarded-For is set but TRUST_PROXY is not: every client behind that proxy shares one rate limit',
      );
    }
    return publicClientKey(req);
  });
}

/**
 * The client as the public listener's limits tell clients apart (publicRateLimit). Worked
 * out once per request: `req.ip` walks X-Forwarded-For against TRUST_PROXY on every read, and
 * a callback is keyed by the rate limit and again by the budget of refused authentications.
 */
function publicClientKey(req: Request): string {
  let key = clientKeys.get(req);
  if (key === undefined) {
    key = ipKeyGenerator(clientAddress(req), 56);
    clientKeys.set(req, key);
  }
  return key;
}

const clientKeys = new WeakMap<Request, string>();

/** Refused authentications per client address (callbacks.routes.ts asks and tells it). */
export interface AuthFailureBudget {
  /**
   * The 429 for a client that has used up its refused authentications in this window, or
   * null. Asked before the body of a request without a valid per-send token is read.
   */
  refusal(req: Request): AppError | null;
  /** Counts one answer 401/403 against the request's client. */
  refused(req: Request): void;
  /** The request's client sent a callback that authenticated (a valid token or signature). */
  authenticated(req: Request): void;
  /**
   * Who sent the request (the metrics' `sender`): as its credentials were judged (authenticated,
   * or refused), or — answered before they were read (a 429, a body refused unread) — whether
   * its address authenticated a callback in the last AUTHENTICATED_GRACE_MS. SignalWire's own
   * addresses authenticate every minute the public limit lets any of their callbacks through.
   */
  sender(req: Request): Sender;
  trackedClients(): number;
}

/**
 * How long a client address that sent a genuine callback is never refused by the budget.
 * SignalWire calls every project's webhooks from the same few addresses and signs each with its
 * project's key: another customer pointing its own webhooks here (refused 403, from SignalWire's
 * address) must not get this project's signature-only callbacks refused 429 unread. Only
 * SignalWire holds the keys and tokens, so an attacker's own address never earns it; and an
 * address SignalWire delivers through is seen authenticating all the time.
 */
export const AUTHENTICATED_GRACE_MS = 10 * 60_000;

/**
 * At most `perMinute` refused authentications (401/403) per client address on the public
 * listener, per replica, counted in a fixed window from the client's first refusal. Past them
 * the client's requests that a valid per-send token does not authenticate are refused 429
 * before their body is read: such a body costs a read and signatures (a form's, a parse too),
 * while RATE_LIMIT_PUBLIC_PER_MINUTE must leave SignalWire room for its bursts. Token-authenticated
 * callbacks from the same address still go through, and an address that authenticated a
 * callback in the last AUTHENTICATED_GRACE_MS is not refused at all: SignalWire's own
 * addresses also carry other projects' webhooks, signed with keys not ours. Clients are told
 * apart as by publicRateLimit, and tracked within `maxClients` the same way; a client is
 * tracked only once it has been refused or has authenticated.
 */
export function publicAuthFailureBudget(deps: RateLimitDeps): AuthFailureBudget {
  const { perMinute, onLimited } = deps;
  const maxClients = deps.maxClients ?? MAX_TRACKED_CLIENTS;
  const counts = windowCounts(maxClients, deps.logger);
  const trusted = recentKeys(maxClients, AUTHENTICATED_GRACE_MS);
  const judged = new WeakMap<Request, Sender>();
  return {
    refusal(req) {
      const now = monotonicNow();
      const key = publicClientKey(req);
      const window = counts.current(key, now);
      if (window === undefined || window.hits < perMinute) return null;
      if (trusted.has(key, now)) return null;
      onLimited?.(req);
      return tooManyRequests(
        window,
        now,
        'Too many refused authentications; retry after the Retry-After delay',
      );
    },
    refused(req) {
      judged.set(req, 'unverified');
      counts.hit(publicClientKey(req), monotonicNow());
    },
    authenticated(req) {
      judged.set(req, 'authenticated');
      trusted.add(publicClientKey(req), monotonicNow());
    },
    sender(req) {
      const judgement = judged.get(req);
      if (judgement !== undefined) return judgement;
      return trusted.has(publicClientKey(req), monotonicNow()) ? 'authenticated' : 'unverified';
    },
    trackedClients: () => counts.size() + trusted.size(),
  };
}

/**
 * Keys seen within the last `ttlMs`, at most `max` of them (the least recently seen forgotten
 * first), in memory: a Map in the order keys were last seen, so both the expiry sweep and the
 * eviction take from its front.
 */
function recentKeys(max: number, ttlMs: number) {
  const seen = new Map<string, number>();
  return {
    add(key: string, now: number): void {
      seen.delete(key);
      seen.set(key, now + ttlMs);
      for (const [oldest, expires] of seen) {
        if (expires > now && seen.size <= max) break;
        seen.delete(oldest);
      }
    },
    has(key: string, now: number): boolean {
      return (seen.get(key) ?? 0) > now;
    },
    size: () => seen.size,
  };
}

/**
 * `req.ip`, when it is an address. With TRUST_PROXY wider than the proxies really in front,
 * Express takes it unchecked from what the client wrote in X-Forwarded-For: any string of up
 * to 16 KiB, a new key (and 16 KiB held) per request. Such a value says nothing about the
 * client; the connection's peer is what is known.
 */
function clientAddress(req: Request): string {
  const ip = withoutPort(req.ip ?? '');
  return isIP(ip) !== 0 ? ip : (req.socket.remoteAddress ?? '');
}

/**
 * Some proxies write the client's port too (`192.0.2.10:50001`, `[2001:db8::5]:443`): the
 * address is still the client's, the port a new one per connection.
 */
function withoutPort(ip: string): string {
  const match = /^(?:\[([0-9a-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):\d{1,5}$/i.exec(ip);
  return match ? (match[1] ?? match[2]!) : ip;
}

/**
 * Per bearer token, for the query API: each API client gets its own budget wherever it calls
 * from. Mounted after bearerAuth, so only valid tokens are counted. The key is a digest of the
 * token: the token itself is never held by the limiter.
 */
export function queryRateLimit(deps: RateLimitDeps): RateLimiter {
  return limiter(deps, bearerTokenKey);
}

export function bearerTokenKey(req: Request): string {
  const token = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
  return `token:${createHash('sha256').update(token).digest('base64url')}`;
}

interface Window {
  hits: number;
  resetAt: number;
}

/**
 * A fixed window per key, starting at the key's first request, in memory. Synchronous on
 * purpose: it runs on every callback, where express-rate-limit's promise chain, per-request
 * validations and hashed IETF partition keys cost a fifth of the whole request (bench).
 * Answers carry the IETF draft-8 `RateLimit` and `RateLimit-Policy` fields; a refusal is a
 * 429 in the service's error shape with `Retry-After`.
 */
function limiter(deps: RateLimitDeps, keyOf: (req: Request) => string): RateLimiter {
  const { perMinute, onLimited } = deps;
  const name = `${perMinute}-in-1min`;
  const policy = `"${name}"; q=${perMinute}; w=${WINDOW_MS / 1000}`;
  const counts = windowCounts(deps.maxClients ?? MAX_TRACKED_CLIENTS, deps.logger);

  const handler: RequestHandler = (req, res, next) => {
    const now = monotonicNow();
    const window = counts.hit(keyOf(req), now);
    const resetSeconds = secondsLeft(window, now);
    res.setHeader('RateLimit-Policy', policy);
    res.setHeader(
      'RateLimit',
      `"${name}"; r=${Math.max(0, perMinute - window.hits)}; t=${resetSeconds}`,
    );
    if (window.hits <= perMinute) {
      next();
      return;
    }
    onLimited?.(req);
    // The error middleware writes the service's one error shape, with this Retry-After.
    next(tooManyRequests(window, now, 'Too many requests; retry after the Retry-After delay'));
  };
  return Object.assign(handler, { trackedClients: counts.size });
}

function secondsLeft(window: Window, now: number): number {
  return Math.max(1, Math.ceil((window.resetAt - now) / 1000));
}

function tooManyRequests(window: Window, now: number, message: string): AppError {
  return new AppError(429, 'rate_limited', message, undefined, {
    'Retry-After': String(secondsLeft(window, now)),
  });
}

/**
 * Counts per key in fixed windows of a minute, in memory.
 *
 * Memory is bounded: the map holds windows in the order they started (a renewed window moves
 * to the end), so when `maxClients` are tracked a new client replaces the oldest window —
 * ended, or about to — in O(1). Under a spray of addresses the limiter therefore forgets the
 * oldest counts (errs towards letting a request through) instead of growing without limit or
 * refusing new clients, SignalWire included.
 */
function windowCounts(maxClients: number, logger: Logger) {
  const windows = new Map<string, Window>();
  let lastFullWarning = -Infinity;
  // Forget the windows that ended, so the map holds at most one minute's worth of clients:
  // swept by the requests themselves, at most once a window (no timer outlives the app).
  let nextSweep = monotonicNow() + WINDOW_MS;
  const sweep = (now: number): void => {
    if (now < nextSweep) return;
    nextSweep = now + WINDOW_MS;
    // In start order: the ended windows come first.
    for (const [key, window] of windows) {
      if (window.resetAt > now) break;
      windows.delete(key);
    }
  };

  const forgetOldest = (now: number): void => {
    const [oldestKey, oldest] = windows.entries().next().value!;
    windows.delete(oldestKey);
    if (oldest.resetAt > now && now - lastFullWarning >= WINDOW_MS) {
      lastFullWarning = now;
      logger.warn(
        { max_clients: maxClients },
        'rate limiter tracks its maximum of clients: the oldest counts are forgotten',
      );
    }
  };

  return {
    /** Counts one for `key` in its current window (started now if it has none) and returns it. */
    hit(key: string, now: number): Window {
      sweep(now);
      let window = windows.get(key);
      if (window === undefined || window.resetAt <= now) {
        if (window !== undefined)
          windows.delete(key); // to the end: the map stays in start order
        else if (windows.size >= maxClients) forgetOldest(now);
        window = { hits: 0, resetAt: now + WINDOW_MS };
        windows.set(key, window);
      }
      window.hits++;
      return window;
    },
    /** The key's window if one is running; never starts one. */
    current(key: string, now: number): Window | undefined {
      const window = windows.get(key);
      return window !== undefined && window.resetAt > now ? window : undefined;
    },
    size: (): number => windows.size,
  };
}
