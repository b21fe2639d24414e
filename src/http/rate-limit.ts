import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { Request, RequestHandler } from 'express';
import { ipKeyGenerator } from 'express-rate-limit';
import { AppError } from '../errors';
import type { Logger } from '../logger';

export interface RateLimitDeps {
  /** Requests allowed per key and minute, per replica (the counters live in memory). */
  perMinute: number;
  logger: Logger;
  /** Told about every refused request (metrics). */
  onLimited?: () => void;
  /** Clients tracked at once (default MAX_TRACKED_CLIENTS): bounds the limiter's memory. */
  maxClients?: number;
}

/** A rate-limiting middleware that says how many clients it tracks (tests, diagnostics). */
export type RateLimiter = RequestHandler & { trackedClients(): number };

const WINDOW_MS = 60_000;

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
    return ipKeyGenerator(clientAddress(req), 56);
  });
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
 *
 * Memory is bounded: the map holds windows in the order they started (a renewed window moves
 * to the end), so when `maxClients` are tracked a new client replaces the oldest window —
 * ended, or about to — in O(1). Under a spray of addresses the limiter therefore forgets the
 * oldest counts (errs towards letting a request through) instead of growing without limit or
 * refusing new clients, SignalWire included.
 */
function limiter(deps: RateLimitDeps, keyOf: (req: Request) => string): RateLimiter {
  const { perMinute, onLimited, logger } = deps;
  const maxClients = deps.maxClients ?? MAX_TRACKED_CLIENTS;
  const name = `${perMinute}-in-1min`;
  const policy = `"${name}"; q=${perMinute}; w=${WINDOW_MS / 1000}`;
  const windows = new Map<string, Window>();
  let lastFullWarning = 0;
  // Forget the windows that ended, so the map holds at most one minute's worth of clients:
  // swept by the requests themselves, at most once a window (no timer outlives the app).
  let nextSweep = Date.now() + WINDOW_MS;
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

  const handler: RequestHandler = (req, res, next) => {
    const now = Date.now();
    sweep(now);
    const key = keyOf(req);
    let window = windows.get(key);
    if (window === undefined || window.resetAt <= now) {
      if (window !== undefined)
        windows.delete(key); // to the end: the map stays in start order
      else if (windows.size >= maxClients) forgetOldest(now);
      window = { hits: 0, resetAt: now + WINDOW_MS };
      windows.set(key, window);
    }
    window.hits++;
    const resetSeconds = Math.max(1, Math.ceil((window.resetAt - now) / 1000));
    res.setHeader('RateLimit-Policy', policy);
    res.setHeader(
      'RateLimit',
      `"${name}"; r=${Math.max(0, perMinute - window.hits)}; t=${resetSeconds}`,
    );
    if (window.hits <= perMinute) {
      next();
      return;
    }
    onLimited?.();
    // The error middleware writes the service's one error shape, with this Retry-After.
    next(
      new AppError(
        429,
        'rate_limited',
        'Too many requests; retry after the Retry-After delay',
        undefined,
        { 'Retry-After': String(resetSeconds) },
      ),
    );
  };
  return Object.assign(handler, { trackedClients: () => windows.size });
}
