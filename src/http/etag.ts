import { createHash } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';

/**
 * Sets a weak ETag derived from `version` — a short string that changes whenever the answer
 * would (a cursor, row versions), so no answer is serialised just to be hashed — and answers
 * 304 when the request's If-None-Match names it. Returns true when it answered.
 *
 * If-None-Match is evaluated here as RFC 9110 §13.1.2 tells an origin server to, and not with
 * Express's `req.fresh`: that also honours a request's `Cache-Control: no-cache`, which the
 * fetch standard adds to every request carrying If-None-Match (browsers and Node's fetch), so
 * no fetch client would ever get its 304.
 */
export function answeredNotModified(req: Request, res: Response, version: string): boolean {
  const digest = createHash('sha256').update(version).digest('base64url').slice(0, 27);
  return answeredNotModifiedAs(req, res, `W/"${digest}"`);
}

/**
 * answeredNotModified for an ETag made elsewhere (the status page's, strong: a hash of the
 * page it serves): sets it, and answers 304 when If-None-Match names it.
 */
export function answeredNotModifiedAs(req: Request, res: Response, etag: string): boolean {
  res.setHeader('ETag', etag);
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  if (!ifNoneMatchNames(req.headers['if-none-match'], etag)) return false;
  res.status(304).end();
  return true;
}

/**
 * Whether an If-None-Match header names `etag` (weak or strong), by weak comparison
 * (§8.8.3.2): `W/"x"` and `"x"` name the same tag; `*` names any.
 */
function ifNoneMatchNames(header: string | undefined, etag: string): boolean {
  if (header === undefined || header.length > 8_192) return false;
  const opaque = withoutWeakPrefix(etag);
  return header.split(',').some((candidate) => {
    const tag = candidate.trim();
    return tag === '*' || withoutWeakPrefix(tag) === opaque;
  });
}

const withoutWeakPrefix = (tag: string): string => (tag.startsWith('W/') ? tag.slice(2) : tag);

/**
 * `Cache-Control: private, no-cache` on every answer of the query API: it is read with a bearer
 * token, and a shared cache set up to store everything (an nginx `proxy_cache_valid`, a CDN in
 * front of the internal listener) would otherwise hand one caller's answer to the next, who may
 * hold no token. A browser still keeps it and revalidates with its ETag (a 304 costs no body).
 */
export function privateAnswers(): RequestHandler {
  return (_req, res, next) => {
    res.setHeader('Cache-Control', 'private, no-cache');
    next();
  };
}
