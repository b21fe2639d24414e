import { z } from 'zod';
import { decimalParameter, oneOrMore, queryParameters } from '../http/query-params';
import { CANONICAL_STATUSES } from '../messages/statuses';
import { StatusSchema } from '../messages/status.schema';
import {
  BEARER,
  bigintId,
  ETAG_HEADER,
  ErrorBody,
  IF_NONE_MATCH,
  NOT_MODIFIED,
  errorResponses,
} from '../openapi/api-docs';
import type { ApiDocs } from '../openapi/api-docs';

export const MAX_WAIT_SECONDS = 30;

export const FeedQuery = queryParameters(
  z
    .object({
      after: z.string().max(200).optional().meta({
        description:
          'A `next_cursor` from an earlier page, or `now` for the current end. Absent: from the oldest event.',
      }),
      limit: decimalParameter({ integer: true, min: 1, max: 1000, default: 100 }),
      wait: decimalParameter({
        integer: false,
        min: 0,
        max: MAX_WAIT_SECONDS,
        default: 0,
        description:
          'Long-poll: with no event to give, wait up to this many seconds for one to commit (on any replica) before answering an empty page.',
      }),
      status: oneOrMore(
        CANONICAL_STATUSES as [string, ...string[]],
        'Only events of these statuses.',
      ).optional(),
      api: oneOrMore(['cxml', 'native'], 'Only events of these APIs.').optional(),
    })
    // A misspelt filter must not silently return everything.
    .strict(),
);

const timestamp = z.iso.datetime().meta({ description: 'ISO 8601, UTC.' });

export const FeedEventDto = z
  .object({
    seq: bigintId(),
    message_id: z.string(),
    api: z.enum(['cxml', 'native']),
    status: StatusSchema,
    raw_status: z.string(),
    error_code: z.string().nullable(),
    error_reason: z
      .string()
      .nullable()
      .meta({ description: "What the error code means (SignalWire's table); null when unknown." }),
    error_message: z.string().nullable(),
    source: z.enum(['proxy', 'callback', 'reconcile', 'replay']),
    provider_timestamp: timestamp.nullable(),
    received_at: timestamp,
    message_status: StatusSchema.meta({
      description: "The message's current status right after this event.",
    }),
  })
  .strict()
  .meta({ id: 'FeedEvent' });

export const FeedPageDto = z
  .object({
    data: z.array(FeedEventDto),
    next_cursor: z.string().meta({
      description:
        'Always present: pass it as `after` for the next page. Opaque; the same cursor works on every replica.',
    }),
  })
  .strict()
  .meta({ id: 'FeedPage' });

export type FeedEventDto = z.infer<typeof FeedEventDto>;

export function describeFeed(docs: ApiDocs): void {
  docs.registerPath({
    method: 'get',
    path: '/v1/events',
    operationId: 'listEvents',
    tags: ['Query API'],
    summary: 'The change feed: every stored event exactly once, in commit order',
    description: [
      'Follow `next_cursor` to get every event the service stores, each once, in the order the',
      'database committed them — across replicas, group-commit batches and spool replays.',
      'A page may hold fewer than `limit` events (even none) while `next_cursor` moves on:',
      'keep following it. The feed can lag while a long transaction is open on the database',
      '(see `sw_status_feed_lag_seconds`).',
    ].join(' '),
    security: [{ [BEARER]: [] }],
    // The parameters as the route reads them, once repeats are merged (queryParameters).
    request: { query: FeedQuery.out, headers: IF_NONE_MATCH },
    responses: {
      200: {
        description: 'A page of events and the cursor after it.',
        headers: z.object({ ETag: ETAG_HEADER }),
        content: { 'application/json': { schema: FeedPageDto } },
      },
      304: NOT_MODIFIED,
      ...errorResponses(400, 401, 429, 500, 503),
      // Retention (RETENTION_DAYS, src/retention); a cursor this database never reached.
      410: {
        description:
          '`cursor_expired`: following this cursor would miss events — retention removed events after it, or it lies beyond every position this database has reached (a cursor of another deployment sharing the secret, or one kept from before the database was restored). Read the current state from `/v1/messages`, then follow the feed from `after=now`.',
        content: { 'application/json': { schema: ErrorBody } },
      },
    },
  });
}
