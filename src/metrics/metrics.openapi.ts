import { z } from 'zod';
import type { ApiDocs } from '../openapi/api-docs';
import { INTERNAL_LISTENER } from '../openapi/listeners';

export function describeMetrics(docs: ApiDocs): void {
  docs.registerPath({
    method: 'get',
    path: '/metrics',
    operationId: 'getMetrics',
    tags: ['Operations'],
    summary: 'Prometheus metrics (sw_status_*)',
    servers: [INTERNAL_LISTENER],
    responses: {
      200: {
        description: 'Prometheus text exposition format.',
        content: { 'text/plain': { schema: z.string() } },
      },
    },
  });
}
