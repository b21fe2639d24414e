import cors from 'cors';
import type { RequestHandler } from 'express';

/**
 * CORS for the query API (`/v1/*`), for browser dashboards served from other origins
 * (CORS_ORIGINS; none by default, so browsers keep refusing cross-origin reads). Preflights
 * are answered before authentication (a browser sends them without the Authorization header).
 * Credentials are a bearer token, never cookies: no Allow-Credentials. ETag is exposed so a
 * dashboard can send If-None-Match, Retry-After and the RateLimit headers so it can pace itself
 * and back off, Allow so it can tell what a 405 wanted.
 */
export function queryApiCors(origins: readonly string[]): RequestHandler | undefined {
  if (origins.length === 0) return undefined;
  return cors({
    origin: origins.includes('*') ? '*' : [...new Set(origins.map(serializedOrigin))],
    methods: ['GET', 'POST'],
    allowedHeaders: ['Authorization', 'Content-Type', 'If-None-Match'],
    exposedHeaders: [
      'ETag',
      'Retry-After',
      'RateLimit',
      'RateLimit-Policy',
      'Allow',
      'X-Request-Id',
    ],
    maxAge: 600,
  });
}

/**
 * An http(s) origin as a browser writes it in the Origin header (RFC 6454 §6.2): host in lower
 * case, no default port. The cors package compares strings, so `https://Dash.example.com:443` in
 * CORS_ORIGINS would otherwise never match the `https://dash.example.com` a browser sends. Other
 * schemes (an extension's, an Electron app's) are kept as written: WHATWG URL gives them the
 * opaque origin "null", which would let every sandboxed or file: page through instead.
 */
function serializedOrigin(origin: string): string {
  try {
    const url = new URL(origin);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : origin;
  } catch {
    return origin;
  }
}
