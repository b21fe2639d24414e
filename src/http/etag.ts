import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';

/**
 * Sets a weak ETag derived from `version` — a short string that changes whenever the answer
 * would (a cursor, row versions), so no answer is serialised just to be hashed — and answers
 * 304 when the request's If-None-Match names it. Returns true when it answered.
 */
export function answeredNotModified(req: Request, res: Response, version: string): boolean {
  const digest = createHash('sha256').update(version).digest('base64url').slice(0, 27);
  res.setHeader('ETag', `W/"${digest}"`);
  if (!req.fresh) return false;
  res.status(304).end();
  return true;
}
