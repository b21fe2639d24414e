import type { Request, RequestHandler, Response } from 'express';
import helmet from 'helmet';

/**
 * helmet's default security headers, worked out once. With its default options every header
 * helmet sets is a constant, yet its thirteen chained middlewares took about 20 µs per request
 * on the bench machine — as much as the HTTP server's own work for a callback — and setting
 * the same headers directly takes half that. helmet stays the source of the values: it runs
 * once, at start-up, against a response that only records what it is told.
 */
export function securityHeaders(): RequestHandler {
  const set: Array<[string, string]> = [];
  const removed: string[] = [];
  const recorder = {
    setHeader(name: string, value: unknown) {
      set.push([name, String(value)]);
    },
    removeHeader(name: string) {
      removed.push(name);
    },
  };
  let finished = false;
  // Both listeners speak plain HTTP (TLS, where there is any, ends in front of them), so
  // helmet's `upgrade-insecure-requests` would send a browser's requests for /docs' own
  // scripts, styles and /openapi.json to an https port that does not exist: a blank page
  // anywhere but loopback. Every other default directive stays.
  const headers = helmet({
    contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
  });
  headers({} as Request, recorder as unknown as Response, (error?: unknown) => {
    if (error) throw error;
    finished = true;
  });
  // A per-request header (a CSP nonce, say) would need helmet on every request again.
  if (!finished) throw new Error('helmet did not finish synchronously: its headers vary');

  return (_req, res, next) => {
    for (const [name, value] of set) res.setHeader(name, value);
    for (const name of removed) res.removeHeader(name);
    next();
  };
}
