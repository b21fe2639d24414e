import { createHash } from 'node:crypto';
import { Router } from 'express';
import type { Response } from 'express';
import type { Logger } from '../logger';
import { loadPageAssets } from './page-assets';
import type { PageAssets } from './page-assets';

/**
 * The page's own Content-Security-Policy, stricter than the service's default (helmet's): only
 * the service's own files, no inline script or style, no plugins, not framed, and API calls
 * to this origin only. No `upgrade-insecure-requests`: the internal listener is plain HTTP
 * inside the cluster, and upgrading its requests would break the page there.
 */
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  // The favicon is an empty data: URL (no request, no 404 in the console).
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * GET / (the status page, DESIGN §12) and GET /page/<hashed file> (its script and stylesheet)
 * on the internal listener, without auth: the page holds no data; it asks for an API token and
 * reads the query API with it. The bundle is loaded once (built in memory when running from
 * source) and kept.
 */
export function pageRoutes({
  logger,
  load = loadPageAssets,
}: {
  logger: Logger;
  load?: () => Promise<PageAssets>;
}): Router {
  const router = Router();
  let assets: Promise<Served> | undefined;
  const served = (): Promise<Served> => {
    assets ??= load().then(index, (error: unknown) => {
      // Try again on the next request rather than keep a failure for the process's life.
      assets = undefined;
      logger.error({ err: error }, 'status page: bundle failed');
      throw error;
    });
    return assets;
  };

  router.get('/', async (_req, res) => {
    const { html } = await served();
    pageHeaders(res);
    // The HTML names the current bundle: always revalidated, never cached stale.
    res.setHeader('Cache-Control', 'no-cache');
    res.type('html').send(html);
  });
  router.get('/page/:file', async (req, res, next) => {
    const file = (await served()).files.get(req.params.file);
    if (!file) return next();
    pageHeaders(res);
    // Content-hashed names: a new bundle has new names, so these never change.
    res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
    res.setHeader('ETag', file.etag);
    res.type(file.type).send(file.contents);
  });
  return router;
}

interface Served {
  html: string;
  files: Map<string, { contents: Buffer; type: string; etag: string }>;
}

function index(assets: PageAssets): Served {
  return {
    html: assets.html,
    files: new Map(
      assets.files.map((file) => [
        file.name,
        {
          contents: file.contents,
          type: file.name.endsWith('.css') ? 'text/css' : 'application/javascript',
          etag: `"${createHash('sha256').update(file.contents).digest('base64url').slice(0, 27)}"`,
        },
      ]),
    ),
  };
}

function pageHeaders(res: Response): void {
  res.setHeader('Content-Security-Policy', PAGE_CSP);
}
