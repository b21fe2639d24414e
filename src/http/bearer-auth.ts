import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { unauthorized } from '../errors';

/**
 * `Authorization: Bearer <token>` against API_TOKENS. Tokens are compared as SHA-256
 * digests so the comparison is constant-time and length-independent.
 */
export function bearerAuth(tokens: readonly string[]): RequestHandler {
  const digests = tokens.map(digest);
  return (req, res, next) => {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!match) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      throw unauthorized('Missing bearer token');
    }
    const given = digest(match[1]!);
    let valid = false;
    for (const expected of digests) if (timingSafeEqual(expected, given)) valid = true;
    if (!valid) {
      res.setHeader('WWW-Authenticate', 'Bearer error="invalid_token"');
      throw unauthorized('Invalid bearer token');
    }
    next();
  };
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
