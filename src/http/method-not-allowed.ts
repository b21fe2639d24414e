import { Router } from 'express';
import { AppError } from '../errors';
import { loggedPath } from './request-log';
import type { OpenApiDocument } from '../openapi/api-document';

export interface RouteMethods {
  /** An Express path (`/v1/messages/:id`). */
  path: string;
  /** Upper case, as in `Allow`. */
  methods: readonly string[];
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

/**
 * The documented routes under `prefix`, with the methods each takes: the OpenAPI document is
 * the one list of the routes (every API test checks each answer against it,
 * test/helpers/openapi.ts), so a route added there gets its 405 without a second table.
 */
export function documentedRoutes(document: OpenApiDocument, prefix: string): RouteMethods[] {
  return Object.entries(document.paths ?? {})
    .filter(([path]) => path === prefix || path.startsWith(`${prefix}/`))
    .map(([path, item]) => ({
      // OpenAPI's `{id}` is Express's `:id`.
      path: path.replace(/\{([^}]+)\}/g, ':$1'),
      methods: HTTP_METHODS.filter((method) => item?.[method] !== undefined).map((method) =>
        method.toUpperCase(),
      ),
    }));
}

/**
 * A known path asked with a method it does not take answers 405 with `Allow`, not 404: the
 * path is right, the method is not (`POST /v1/events` from a client that meant to read the
 * feed). Mounted after the routes that take the methods, so only the others reach it.
 */
export function methodNotAllowed(routes: readonly RouteMethods[]): Router {
  const router = Router();
  for (const { path, methods } of routes) {
    // Express answers HEAD wherever it answers GET.
    const allow = [...methods, ...(methods.includes('GET') ? ['HEAD'] : [])].join(', ');
    router.all(path, (req, _res, next) => {
      next(
        new AppError(
          405,
          'method_not_allowed',
          `${req.method} is not allowed on ${loggedPath(req.path)}: it takes ${allow}`,
          undefined,
          { Allow: allow },
        ),
      );
    });
  }
  return router;
}
