import { z } from 'zod';
import type { ApiDocs } from '../openapi/api-docs';
import { INTERNAL_LISTENER } from '../openapi/listeners';

export function describePage(docs: ApiDocs): void {
  docs.registerPath({
    method: 'get',
    path: '/',
    tags: ['Operations'],
    summary: 'The status page, for people (DESIGN §12)',
    description:
      'HTML; its script and stylesheet are served under `/page/`. It asks for an API token and reads the query API with it.',
    servers: [INTERNAL_LISTENER],
    responses: {
      200: { description: 'The page.', content: { 'text/html': { schema: z.string() } } },
    },
  });
}
