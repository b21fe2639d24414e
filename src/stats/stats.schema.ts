import { z } from 'zod';
import { instant, oneOrMore, queryParameters } from '../http/query-params';
import { countPerStatus } from '../messages/status.schema';
import {
  BEARER,
  ETAG_HEADER,
  IF_NONE_MATCH,
  NOT_MODIFIED,
  errorResponses,
} from '../openapi/api-docs';
import type { ApiDocs } from '../openapi/api-docs';

export const StatsQuery = queryParameters(
  z
    .object({
      created_since: instant(
        'Start of the window (inclusive): messages first seen from then.',
      ).optional(),
      created_until: instant(
        'End of the window (exclusive). Default: now; the window defaults to the 24 hours before it.',
      ).optional(),
      api: oneOrMore(['cxml', 'native'], 'Only messages of these APIs.').optional(),
      bucket: z
        .enum(['minute', 'hour', 'day'])
        .optional()
        .meta({ description: 'Adds `series`: counts per UTC minute, hour or day of the window.' }),
    })
    .strict(),
);

const share = z.number().min(0).max(1);
const count = z.number().int().min(0);

export const StatsDto = z
  .object({
    created_since: z.iso.datetime(),
    created_until: z.iso.datetime(),
    total: count.meta({ description: 'Messages first seen in the window.' }),
    by_status: countPerStatus(count).meta({
      description: 'Those messages by their current status (every status, 0 included).',
    }),
    delivery_rate: share.nullable().meta({
      description:
        'delivered / (delivered + undelivered + failed), a read message (native read receipts) counted as delivered; null with none.',
    }),
    by_error: z
      .array(
        z
          .object({
            api: z.enum(['cxml', 'native']),
            error_code: z.string(),
            error_reason: z.string().nullable(),
            count,
          })
          .strict(),
      )
      .meta({ description: 'Messages by their current error code, most frequent first.' }),
    latency_ms: z
      .object({
        p50: z.number().nullable(),
        p95: z.number().nullable(),
        p99: z.number().nullable(),
      })
      .strict()
      .meta({
        description:
          'First event → first final status (rank ≥ 50), over the messages that have one; within 5 % of exact. Null with none.',
      }),
    final_within_10s: share
      .nullable()
      .meta({ description: 'Share of the messages that reached a final status within 10 s.' }),
    stuck: count.meta({
      description:
        'Messages first seen in the window that reconciliation gave up on (0 until it runs). A message goes stuck after the last RECONCILE_SCHEDULE step (by default 24 h after its last event), so a 24-hour window rarely holds one: GET /v1/messages?stuck=true lists every stuck message.',
    }),
    conflicts: count.meta({ description: 'Messages with two different final statuses.' }),
    series: z
      .array(
        z
          .object({
            start: z.iso.datetime(),
            total: count,
            delivered: count,
            undelivered: count,
            failed: count,
          })
          .strict(),
      )
      .optional()
      .meta({ description: 'With `bucket`: one point per bucket, empty buckets included.' }),
  })
  .strict()
  .meta({ id: 'Stats' });

export function describeStats(docs: ApiDocs): void {
  docs.registerPath({
    method: 'get',
    path: '/v1/stats',
    operationId: 'getStats',
    tags: ['Query API'],
    summary: 'Delivery statistics of the messages first seen in a window',
    description:
      'Exact counts (equal to a scan of the messages) for any window edges, from rollups kept in the same transactions as the events.',
    security: [{ [BEARER]: [] }],
    // The parameters as the route reads them, once repeats are merged (queryParameters).
    request: { query: StatsQuery.out, headers: IF_NONE_MATCH },
    responses: {
      200: {
        description: 'The statistics.',
        headers: z.object({ ETag: ETAG_HEADER }),
        content: { 'application/json': { schema: StatsDto } },
      },
      304: NOT_MODIFIED,
      ...errorResponses(400, 401, 429, 500, 503),
    },
  });
}
