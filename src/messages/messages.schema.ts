import { z } from 'zod';
import {
  decimalParameter,
  instant,
  oneOrMore,
  oneOrMorePhoneNumbers,
  oneOrMoreText,
  queryParameters,
  storableText,
} from '../http/query-params';
import {
  BEARER,
  bigintId,
  ETAG_HEADER,
  IF_NONE_MATCH,
  NOT_MODIFIED,
  errorResponses,
} from '../openapi/api-docs';
import type { ApiDocs } from '../openapi/api-docs';
import { CANONICAL_STATUSES } from './statuses';
import { StatusSchema } from './status.schema';

export const MessageParams = z.object({ id: storableText(64) });

export const ListQuery = queryParameters(
  z
    .object({
      status: oneOrMore(CANONICAL_STATUSES as [string, ...string[]], 'Current status.').optional(),
      to: oneOrMorePhoneNumbers('Recipient (E.164).').optional(),
      from: oneOrMorePhoneNumbers('Sender (E.164).').optional(),
      api: oneOrMore(['cxml', 'native'], 'API flavour.').optional(),
      error_code: oneOrMoreText(64, 'Current error code.').optional(),
      since: instant('Last activity at or after.').optional(),
      until: instant('Last activity before.').optional(),
      created_since: instant('First seen at or after.').optional(),
      created_until: instant('First seen before.').optional(),
      stuck: z
        .enum(['true', 'false'])
        .transform((value) => value === 'true')
        .optional()
        .meta({
          description: 'true: only messages reconciliation gave up on (none until it runs).',
        }),
      order: z.enum(['activity', 'created']).default('activity').meta({
        description:
          '`activity`: newest activity first; a message that changes during a walk moves to the front, behind the walk, so the walk does not return it again, or at all if it had not reached it yet (follow `GET /v1/events` for changes). `created`: newest first-seen first, on a key that never changes: a walk neither skips nor repeats a message.',
      }),
      limit: decimalParameter({ integer: true, min: 1, max: 500, default: 50 }),
      cursor: z
        .string()
        .max(300)
        .optional()
        .meta({ description: 'A `next_cursor` from the previous page of the same order.' }),
    })
    // A misspelt filter must not silently return everything.
    .strict(),
);

const timestamp = z.iso.datetime().meta({ description: 'ISO 8601, UTC.' });

// src/messages/error-reasons.ts: SignalWire's meaning of the code, per API.
const REASON = z
  .string()
  .nullable()
  .meta({ description: "SignalWire's meaning of `error_code`; null without one or when unknown." });

export const HistoryDto = z
  .object({
    seq: bigintId(),
    status: StatusSchema,
    raw_status: z.string(),
    error_code: z.string().nullable(),
    error_reason: REASON,
    error_message: z.string().nullable(),
    source: z.enum(['proxy', 'callback', 'reconcile', 'replay']),
    provider_timestamp: timestamp.nullable(),
    received_at: timestamp,
  })
  .strict()
  .meta({ id: 'HistoryEvent' });

export const MessageDto = z
  .object({
    id: z.string(),
    api: z.enum(['cxml', 'native']),
    project_id: z.string().nullable(),
    from: z.string().nullable(),
    to: z.string().nullable(),
    kind: z.enum(['sms', 'mms']).nullable(),
    status: StatusSchema,
    raw_status: z.string(),
    status_rank: z.number().int().meta({
      description:
        'Rank of `status` (queued and receiving 10, sending 20, sent 30, delivered, undelivered, failed and received 50, read 60, unknown 0): a later event of a lower rank never replaces it.',
    }),
    error_code: z.string().nullable(),
    error_reason: REASON,
    error_message: z.string().nullable(),
    conflict: z.boolean(),
    num_segments: z.number().int().nullable(),
    num_media: z.number().int().nullable(),
    ref: z.string().nullable(),
    sent_via_proxy: z.boolean(),
    client_status_callback: z.string().nullable(),
    stuck: z.boolean().meta({
      description: 'Reconciliation gave up on it: still not final after the last lookup.',
    }),
    sweep_step: z.number().int().min(0).meta({
      description: 'Lookups reconciliation made since the last event (a new event resets it).',
    }),
    sweep_checked_at: timestamp
      .nullable()
      .meta({ description: 'When reconciliation last looked the message up; null: never.' }),
    sweep_error: z.string().nullable().meta({
      description:
        'Why the last lookup told nothing (`not_found`, `unauthorized`, …); null when it answered.',
    }),
    body: z.string().optional().meta({ description: 'Only with STORE_BODY=true.' }),
    created_at: timestamp.meta({ description: 'First seen; never changes.' }),
    updated_at: timestamp,
    last_event_at: timestamp,
    history: z
      .array(HistoryDto)
      .optional()
      .meta({ description: 'GET /v1/messages/{id} only: every event in arrival order.' }),
  })
  .strict()
  .meta({ id: 'Message' });

export const MessagePageDto = z
  .object({
    data: z.array(MessageDto),
    next_cursor: z.string().nullable().meta({ description: 'null on the last page.' }),
  })
  .strict()
  .meta({ id: 'MessagePage' });

export function describeMessages(docs: ApiDocs): void {
  const ok = (description: string, schema: z.ZodType) => ({
    description,
    headers: z.object({ ETag: ETAG_HEADER }),
    content: { 'application/json': { schema } },
  });
  docs.registerPath({
    method: 'get',
    path: '/v1/messages/{id}',
    operationId: 'getMessage',
    tags: ['Query API'],
    summary: 'A message and its history',
    security: [{ [BEARER]: [] }],
    request: { params: MessageParams, headers: IF_NONE_MATCH },
    responses: {
      200: ok('The message, with `history`.', MessageDto),
      304: NOT_MODIFIED,
      ...errorResponses(400, 401, 404, 429, 500, 503),
    },
  });
  docs.registerPath({
    method: 'get',
    path: '/v1/messages',
    operationId: 'listMessages',
    tags: ['Query API'],
    summary: 'Messages, filtered, keyset-paginated',
    security: [{ [BEARER]: [] }],
    // The parameters as the route reads them, once repeats are merged (queryParameters).
    request: { query: ListQuery.out, headers: IF_NONE_MATCH },
    responses: {
      200: ok('A page of messages.', MessagePageDto),
      304: NOT_MODIFIED,
      ...errorResponses(400, 401, 429, 500, 503),
    },
  });
}
