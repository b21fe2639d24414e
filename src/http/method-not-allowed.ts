import { Router } from 'express';
import { AppError } from '../errors';

/**
 * A known path asked with a method it does not take answers 405 with `Allow`, not 404: the
 * path is right, the method is not (`POST /v1/events` from a client that meant to read the
 * feed). Mounted after the routes that take the methods, so only the others reach it.
 */
export function methodNotAllowed(
  routes: ReadonlyArray<{ path: string; methods: readonly string[] }>,
): Router {
  const router = Router();
  for (const { path, methods } of routes) {
    // Express answers HEAD wherever it answers GET.
    const allow = [...methods, ...(methods.includes('GET') ? ['HEAD'] : [])].join(', ');
    router.all(path, (req, _res, next) => {
      next(
        new AppError(
          405,
          'method_not_allowed',
          `${req.method} is not allowed on ${req.path}: it takes ${allow}`,
          undefined,
          { Allow: allow },
        ),
      );
    });
  }
  return router;
}
