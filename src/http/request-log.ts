import type { RequestHandler } from 'express';
import type { Logger } from '../logger';
import type { LogBudget } from './log-budget';

/**
 * One line per request. The path is logged with callback tokens masked (a token
 * authenticates callbacks) and never with the query string, which may carry signed data.
 * Successful requests log at debug: at thousands of callbacks a second, info would be noise.
 * A 4xx, which any anonymous client can cause, logs at info within `budget` (so many a minute
 * per status; the rest are counted in one line a minute).
 */
export function requestLog(logger: Logger, budget?: LogBudget): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    // Read now: a router mounted on a prefix (the proxy's pass-through, /v1, /docs) strips it
    // from req.url while it answers, and 'finish' comes from inside it.
    const path = req.path;
    res.on('finish', () => {
      const level = res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'info' : 'debug';
      if (!logger.isLevelEnabled(level)) return;
      if (level === 'info' && budget && !budget.allows(`status ${res.statusCode}`)) return;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      logger[level](
        {
          request_id: req.id,
          method: req.method,
          path: loggedPath(path),
          status: res.statusCode,
          ms: Math.round(ms * 10) / 10,
        },
        'request',
      );
    });
    next();
  };
}

// Node takes request lines of up to 16 KiB, and every 4xx (429s included) is logged at info:
// an anonymous client must not decide how much is written per request.
const MAX_LOGGED_PATH = 256;

/** The path as logged: tokens masked first (a cut must not leave half a token), then cut. */
export function loggedPath(path: string): string {
  const masked = maskTokens(path);
  return masked.length > MAX_LOGGED_PATH ? `${masked.slice(0, MAX_LOGGED_PATH)}…` : masked;
}

export function maskTokens(path: string): string {
  // Case-insensitive, as the routes are (src/callbacks/callbacks.routes.ts), anywhere in the
  // path (PUBLIC_BASE_URL may have a path of its own, even `/callbacks`), and whatever follows
  // the API's name: a callback URL given wrong (a base URL written with a trailing `/` makes
  // every callback `…/callbacks/native//<token>`, a 404) still carries its token, as
  // `%2F<token>` or `/x/../<token>` do.
  const at = CALLBACK_ROUTE_AT.exec(path) ?? CALLBACKS_AT.exec(path);
  if (at === null) return path;
  const end = at.index + at[0].length;
  return /^\/*$/.test(path.slice(end)) ? path : `${path.slice(0, end)}/[token]`;
}

/** A URL with maskTokens applied to its path (not re-parsed: URL.origin drops a default port). */
export function maskUrlTokens(url: string): string {
  const pathAt = url.indexOf('/', url.indexOf('//') + 2);
  return pathAt === -1 ? url : `${url.slice(0, pathAt)}${maskTokens(url.slice(pathAt))}`;
}

// Literals first, no quantifier before them: tried from every position of a long path, they
// stay linear.
const CALLBACK_ROUTE_AT = /\/callbacks\/+(?:cxml|native)(?![a-z0-9])/i;
const CALLBACKS_AT = /\/callbacks(?![a-z0-9])/i;
