import { createHash } from 'node:crypto';
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
}

const WINDOW_MS = 60_000;

/**
 * Per client address, for the public listener. `req.ip` is the real client behind the load
 * balancer only when TRUST_PROXY names the proxies in front of the service; IPv6 clients are
 * grouped by /56, since one host usually owns a whole prefix.
 */
export function publicRateLimit(deps: RateLimitDeps): RequestHandler {
  let warned = false;
  return limiter(deps, (req) => {
    if (!warned && req.headers['x-forwarded-for'] !== undefined && !req.app.get('trust proxy')) {
      warned = true;
      deps.logger.warn(
        'X-Forwarded-For is set but TRUST_PROXY is not: every client behind that proxy shares one rate limit',
      );
    }
    return ipKeyGenerator(req.ip ?? '', 56);
  });
}

/**
 * Per bearer token, for the query API: each API client gets its own budget wherever it calls
 * from. Mounted after bearerAuth, so only valid tokens are counted. The key is a digest of the
 * token: the token itself is never held by the limiter.
 */
export function queryRateLimit(deps: RateLimitDeps): RequestHandler {
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
function limiter(deps: RateLimitDeps, keyOf: (req: Request) => string): RequestHandler {
  const { perMinute, onLimited } = deps;
  const name = `${perMinute}-in-1min`;
  const policy = `"${name}"; q=${perMinute}; w=${WINDOW_MS / 1000}`;
  const windows = new Map<string, Window>();
  // Forget the windows that ended, so the map holds at most one minute's worth of clients.
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [key, window] of windows) if (window.resetAt <= now) windows.delete(key);
  }, WINDOW_MS);
  sweep.unref();

  return (req, res, next) => {
    const now = Date.now();
    const key = keyOf(req);
    let window = windows.get(key);
    if (window === undefined || window.resetAt <= now) {
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
}
