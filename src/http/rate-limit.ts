import { createHash } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { rateLimit } from 'express-rate-limit';
import type { Options } from 'express-rate-limit';
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
  return limiter(deps, {});
}

/**
 * Per bearer token, for the query API: each API client gets its own budget wherever it calls
 * from. Mounted after bearerAuth, so only valid tokens are counted. The key is a digest of the
 * token: the token itself is never held by the store.
 */
export function queryRateLimit(deps: RateLimitDeps): RequestHandler {
  return limiter(deps, { keyGenerator: (req) => bearerTokenKey(req) });
}

export function bearerTokenKey(req: Request): string {
  const token = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
  return `token:${createHash('sha256').update(token).digest('base64url')}`;
}

function limiter(deps: RateLimitDeps, options: Partial<Options>): RequestHandler {
  const { logger } = deps;
  return rateLimit({
    windowMs: WINDOW_MS,
    limit: deps.perMinute,
    // RateLimit/RateLimit-Policy (IETF draft 8) and Retry-After on a 429; no X-RateLimit-*.
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    handler: (_req, _res, next) => {
      deps.onLimited?.();
      // The error middleware writes the service's one error shape; Retry-After is already set.
      next(
        new AppError(429, 'rate_limited', 'Too many requests; retry after the Retry-After delay'),
      );
    },
    // The library's configuration checks (e.g. X-Forwarded-For without TRUST_PROXY) are
    // operator problems: they belong in the service log, not on stderr.
    logger: {
      warn: (error: unknown, message?: string) =>
        logger.warn({ err: error }, message ?? 'rate limiter'),
      error: (error: unknown, message?: string) =>
        logger.error({ err: error }, message ?? 'rate limiter'),
    },
    ...options,
  });
}
