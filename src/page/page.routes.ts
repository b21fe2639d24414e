import { createHash } from 'node:crypto';
import { Router } from 'express';
import { answeredNotModifiedAs } from '../http/etag';
import type { Logger } from '../logger';
import { loadPageBundle } from './page-assets';
import type { PageBundle } from './page-assets';
import { assemblePage } from './page-html';

/**
 * GET / (the status page, DESIGN §12) on the internal listener, without auth: the page holds no
 * data; it asks for an API token and reads the query API with it. The page is one response,
 * its script and stylesheet inside (page-html.ts), assembled once (bundled in memory when
 * running from source) and kept.
 */
export function pageRoutes({
  logger,
  load = loadPageBundle,
}: {
  logger: Logger;
  load?: () => Promise<PageBundle>;
}): Router {
  const router = Router();
  let page: Promise<ServedPage> | undefined;
  const served = (): Promise<ServedPage> => {
    page ??= load()
      .then(assemblePage)
      .then(
        ({ html, csp }) => ({ html, csp, etag: `"${sha256(html).slice(0, 27)}"` }),
        (error: unknown) => {
          // Try again on the next request rather than keep a failure for the process's life.
          page = undefined;
          logger.error({ err: error }, 'status page: bundle failed');
          throw error;
        },
      );
    return page;
  };

  router.get('/', async (req, res) => {
    const { html, csp, etag } = await served();
    res.setHeader('Content-Security-Policy', csp);
    // Revalidated on every visit: an unchanged page costs a 304, a new release is seen at once.
    res.setHeader('Cache-Control', 'no-cache');
    // If-None-Match compared as for /v1 (etag.ts), not by res.send's `req.fresh`: that also
    // honours the request's `Cache-Control: no-cache`, which fetch adds to every request
    // carrying If-None-Match, so no fetch client ever got the documented 304.
    if (answeredNotModifiedAs(req, res, etag)) return;
    res.type('html').send(html);
  });
  return router;
}

interface ServedPage {
  html: string;
  csp: string;
  etag: string;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}
