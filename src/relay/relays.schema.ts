import { z } from 'zod';
import { decimalParameter, queryParameters } from '../http/query-params';
import {
  BEARER,
  bigintId,
  ETAG_HEADER,
  IF_NONE_MATCH,
  NOT_MODIFIED,
  errorResponses,
} from '../openapi/api-docs';
import type { ApiDocs } from '../openapi/api-docs';

/**
 * The relay routes' shapes (DESIGN §10), as zod schemas: the routes validate with them and
 * the OpenAPI document can be generated from them.
 */

export const RelayState = z.enum(['pending', 'delivered', 'dead']);

// A misspelt filter must not silently return everything (strict); a repeated one is a 400
// naming it (queryParameters), as on the other lists.
export const RelayListQuery = queryParameters(
  z
    .object({
      state: RelayState.optional(),
      message_id: z.string().min(1).max(64).optional(),
      limit: decimalParameter({ integer: true, min: 1, max: 500, default: 50 }),
      cursor: z.string().max(200).optional(),
    })
    .strict(),
);

export const RelayParams = z.object({
  // Read as a Number (relay ids are numbers throughout): beyond 2^53 one would name another.
  id: z
    .string()
    .regex(/^[1-9]\d{0,15}$/, 'a relay id')
    .refine((id) => Number.isSafeInteger(Number(id)), 'a relay id')
    .meta({ description: 'A relay id: a whole number from 1 to 9007199254740991 (2^53 − 1).' }),
});

export const RelayDto = z
  .object({
    id: bigintId(),
    message_id: z.string(),
    event_seq: bigintId().nullable(),
    url: z.string(),
    state: RelayState,
    attempts: z.number().int(),
    /** When the next attempt is due; null unless pending. */
    next_attempt_at: z.iso.datetime().nullable(),
    last_status: z.number().int().nullable(),
    last_error: z.string().nullable(),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
    delivered_at: z.iso.datetime().nullable(),
  })
  .strict()
  .meta({ id: 'Relay' });
export type RelayDto = z.infer<typeof RelayDto>;

export const RelayList = z
  .object({
    data: z.array(RelayDto),
    next_cursor: z.string().nullable().meta({ description: 'null on the last page.' }),
  })
  .strict()
  .meta({ id: 'RelayPage' });

export function describeRelays(docs: ApiDocs): void {
  const json = (description: string, schema: z.ZodType) => ({
    description,
    content: { 'application/json': { schema } },
  });
  docs.registerPath({
    method: 'get',
    path: '/v1/relays',
    operationId: 'listRelays',
    tags: ['Query API'],
    summary: "Relays of callbacks to the apps' own status callbacks, newest first",
    security: [{ [BEARER]: [] }],
    // The parameters as the route reads them, once repeats are merged (queryParameters).
    request: { query: RelayListQuery.out, headers: IF_NONE_MATCH },
    responses: {
      200: { ...json('A page of relays.', RelayList), headers: z.object({ ETag: ETAG_HEADER }) },
      304: NOT_MODIFIED,
      ...errorResponses(400, 401, 429, 500, 503),
    },
  });
  docs.registerPath({
    method: 'post',
    path: '/v1/relays/{id}/retry',
    operationId: 'retryRelay',
    tags: ['Query API'],
    summary: 'Retry a dead relay (dead → pending), or bring a pending one forward',
    description:
      'A dead relay is pending again, due now, with a fresh retry schedule (`attempts` 0). A ' +
      'pending one is due now, its attempts kept: once its app answers again, its backlog need ' +
      'not wait for the next scheduled attempt. A message’s relays still go out in order. 409 ' +
      '`already_delivered` for a delivered relay; 409 `being_attempted` (with Retry-After) for a ' +
      'pending one a worker holds now, whose outcome would undo the retry.',
    security: [{ [BEARER]: [] }],
    request: { params: RelayParams },
    responses: {
      200: json('The relay, pending and due.', RelayDto),
      ...errorResponses(400, 401, 404, 409, 429, 500, 503),
    },
  });
}
