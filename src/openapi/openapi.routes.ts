import path from 'node:path';
import express, { Router } from 'express';
import type { Response } from 'express';
import { z } from 'zod';
import type { ApiDocs } from './api-docs';
import type { OpenApiDocument } from './api-document';
import { INTERNAL_LISTENER } from './listeners';

/**
 * Swagger UI's files, found by its package.json: the package's own entry point (its
 * getAbsoluteFSPath) loads the whole 1.7 MB browser bundle — React, Redux, core-js and the
 * browser globals they leave — into the server, some 20 MB of memory per pod for a path.
 */
const SWAGGER_UI_DIR = path.dirname(require.resolve('swagger-ui-dist/package.json'));

/**
 * GET /openapi.json and GET /docs on the internal listener, without auth (DESIGN §6). The
 * document is built once, at start. /docs is Swagger UI, its files served from the
 * swagger-ui-dist package (nothing from the internet); its start script is a file too, so the
 * service's Content-Security-Policy (no inline scripts) holds.
 */
export function openApiRoutes({ document }: { document: OpenApiDocument }): Router {
  const router = Router();
  const json = JSON.stringify(document);
  router.get('/openapi.json', (_req, res) => {
    answer(res, 'application/json; charset=utf-8', json);
  });
  // `/docs` and `/docs/` alike (DESIGN §6 names the first): the page's asset URLs are absolute.
  router.get('/docs', (_req, res) => {
    answer(res, 'text/html; charset=utf-8', DOCS_PAGE);
  });
  router.get('/docs/start.js', (_req, res) => {
    answer(res, 'application/javascript; charset=utf-8', START_SCRIPT);
  });
  const assets = express.static(SWAGGER_UI_DIR, {
    index: false,
    setHeaders: (res) => res.setHeader('Cache-Control', 'public, max-age=3600'),
  });
  // Only what the page loads. The package also holds a demo page (index.html, which loads a
  // spec from petstore.swagger.io), an OAuth redirect page, source maps and its package.json.
  router.use('/docs', (req, res, next) => {
    if (DOCS_ASSETS.has(req.path)) return assets(req, res, next);
    next();
  });
  return router;
}

/**
 * A plain Node write, never Express's send(): that answers `If-None-Match: *` with a 304,
 * which these operations do not declare (the listener sets no ETag on them either).
 */
function answer(res: Response, type: string, body: string): void {
  res.statusCode = 200;
  res.setHeader('Content-Type', type);
  res.end(body);
}

const DOCS_ASSETS: ReadonlySet<string> = new Set([
  '/swagger-ui.css',
  '/swagger-ui-bundle.js',
  '/swagger-ui-standalone-preset.js',
]);

const DOCS_PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>sw-status API</title>
    <link rel="stylesheet" href="/docs/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js"></script>
    <script src="/docs/swagger-ui-standalone-preset.js"></script>
    <script src="/docs/start.js"></script>
  </body>
</html>
`;

// validatorUrl null: Swagger UI would otherwise send the document's URL to validator.swagger.io
// for its badge whenever the page is not opened on localhost.
const START_SCRIPT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: 'StandaloneLayout',
});
`;

export function describeOpenApi(docs: ApiDocs): void {
  docs.registerPath({
    method: 'get',
    path: '/openapi.json',
    operationId: 'getOpenApiDocument',
    tags: ['Operations'],
    summary: 'This document (OpenAPI 3.1)',
    servers: [INTERNAL_LISTENER],
    responses: {
      200: {
        description: 'The OpenAPI document.',
        content: { 'application/json': { schema: z.record(z.string(), z.unknown()) } },
      },
    },
  });
  docs.registerPath({
    method: 'get',
    path: '/docs',
    operationId: 'getDocs',
    tags: ['Operations'],
    summary: 'This document, rendered (Swagger UI)',
    servers: [INTERNAL_LISTENER],
    responses: {
      200: { description: 'The page.', content: { 'text/html': { schema: z.string() } } },
    },
  });
}
