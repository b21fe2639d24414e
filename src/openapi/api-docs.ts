import { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import type { ResponseConfig, RouteConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

/**
 * Where route modules describe their routes for the OpenAPI document (src/openapi). Each
 * module exports a `describe…(docs)` that registers its paths with the zod schemas its routes
 * validate with; src/openapi/api-document.ts lists the modules.
 */
export type ApiDocs = OpenAPIRegistry;

/** The one error body of the service (src/http/error-handler.ts). */
export const ErrorBody = z
  .object({
    error: z
      .object({
        code: z.string().meta({ example: 'invalid_request' }),
        message: z.string(),
        details: z
          .array(z.object({ path: z.string(), message: z.string() }).strict())
          .optional()
          .meta({ description: 'For a 400 from validation: which parameter, and why.' }),
        request_id: z.string(),
      })
      .strict(),
  })
  .strict()
  .meta({ id: 'Error', description: 'Every error answer of the service (not the proxy’s).' });

const ERROR_MEANING: Readonly<Record<number, string>> = {
  400: 'The request is invalid (see `details`).',
  401: 'Missing or invalid credentials.',
  403: 'Forbidden.',
  404: 'Not found.',
  409: 'Conflict with the current state (e.g. a relay already delivered, or being attempted now).',
  413: 'The body is too large.',
  415: 'Unsupported content type.',
  429: 'Rate limited; retry later.',
  500: 'Internal error.',
  503: 'Unavailable (the database is unreachable, or the service is overloaded); see `Retry-After`.',
};

/** DESIGN §2 and §6: a 429 or a 503 says when to come back. */
const RETRY_AFTER = z.object({
  'Retry-After': z.string().meta({ description: 'Seconds to wait before trying again.' }),
});

/** Error answers in the service's error shape, by status. */
export function errorResponses(...statuses: number[]): Record<number, ResponseConfig> {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: ERROR_MEANING[status] ?? 'Error.',
        ...((status === 429 || status === 503) && { headers: RETRY_AFTER }),
        content: { 'application/json': { schema: ErrorBody } },
      },
    ]),
  );
}

/**
 * What any operation may answer besides the statuses it declares: a refusal in the error shape
 * that comes before any route, such as the listener's own (src/http/listener.ts) to a request
 * it cannot take — too slow (408), an Expect it does not meet (417), headers too large (431), a
 * transfer coding it does not know (501). Without it, a validating client refuses those
 * answers outright, and a generated one has no branch for them.
 */
export const OTHER_REFUSAL: ResponseConfig = {
  description:
    'Any other refusal, in the error shape (e.g. 408, 417, 431, 501 written by the listener itself).',
  content: { 'application/json': { schema: ErrorBody } },
};

/** The route with OTHER_REFUSAL as its `default`, unless it has its own (the send proxy's). */
export function withOtherRefusals(route: RouteConfig): RouteConfig {
  if (route.responses['default'] !== undefined) return route;
  return { ...route, responses: { ...route.responses, default: OTHER_REFUSAL } };
}

/** `ETag` on every `GET /v1/*` answer. */
export const ETAG_HEADER = z.string().meta({
  description: 'Validator of this answer; send it back in `If-None-Match` to get a 304.',
});

/** A 304 carries the ETag it matched (RFC 9110 §15.4.5), so a client can keep it. */
export const NOT_MODIFIED: ResponseConfig = {
  description: 'Not modified: `If-None-Match` named the current `ETag`.',
  headers: z.object({ ETag: ETAG_HEADER }),
};

/**
 * The request header of a conditional GET, declared so that a generated client lets its
 * caller send it (openapi-typescript types undeclared headers as `never`).
 */
export const IF_NONE_MATCH = z.object({
  'If-None-Match': z.string().optional().meta({
    description: 'An `ETag` of an earlier answer: a 304 without a body while it is current.',
  }),
});

/**
 * A PostgreSQL bigint (an event's seq, a relay's id) as JSON: `int64`, so that a generated
 * client in a typed language does not read it into 32 bits (openapi-generator maps a bare
 * `integer` to Java's Integer, which a busy store passes after 2^31 events); at most 2^53 − 1,
 * the largest a JavaScript number holds exactly.
 */
export function bigintId() {
  return z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).meta({ format: 'int64' });
}

/** The bearer scheme of the query API (API_TOKENS). */
export const BEARER = 'bearerAuth';

export function createApiDocs(): ApiDocs {
  const docs = new OpenAPIRegistry();
  docs.registerComponent('securitySchemes', BEARER, {
    type: 'http',
    scheme: 'bearer',
    description: 'One of API_TOKENS.',
  });
  return docs;
}
