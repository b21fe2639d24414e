import { z } from 'zod';
import { ETAG_HEADER, IF_NONE_MATCH, NOT_MODIFIED } from '../openapi/api-docs';
import type { ApiDocs } from '../openapi/api-docs';
import { INTERNAL_LISTENER } from '../openapi/listeners';

export function describePage(docs: ApiDocs): void {
  docs.registerPath({
    method: 'get',
    path: '/',
    operationId: 'getStatusPage',
    tags: ['Operations'],
    summary: 'The status page, for people (DESIGN §12)',
    description:
      'One HTML document with its script and stylesheet inside. It asks for an API token and reads the query API with it.',
    servers: [INTERNAL_LISTENER],
    request: { headers: IF_NONE_MATCH },
    responses: {
      200: {
        description: 'The page.',
        headers: z.object({ ETag: ETAG_HEADER }),
        content: { 'text/html': { schema: z.string() } },
      },
      304: NOT_MODIFIED,
    },
  });
}
