import { z } from 'zod';
import { errorResponses } from '../openapi/api-docs';
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
  docs.registerPath({
    method: 'get',
    path: '/page/{file}',
    tags: ['Operations'],
    summary: 'The status page’s script and stylesheet',
    description:
      'Named by a hash of their contents (the page names the current ones), so cached for good.',
    servers: [INTERNAL_LISTENER],
    request: { params: z.object({ file: z.string().meta({ example: 'app-2IZWAIMK.js' }) }) },
    responses: {
      200: {
        description: 'The file.',
        content: {
          'application/javascript': { schema: z.string() },
          'text/css': { schema: z.string() },
        },
      },
      ...errorResponses(404),
    },
  });
}
