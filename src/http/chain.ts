import type { NextFunction, Request, RequestHandler, Response } from 'express';

/**
 * Several middlewares as ONE Express layer. Every layer costs Express's router a few
 * microseconds per request (matching, URL trimming, promise checks) — for middlewares that
 * run on every callback, that was more than their own work (bench). The handlers run in
 * order as Express would run them: `next(error)` (or a throw, or a rejected promise) skips
 * the rest and goes to the error handlers; a handler that answers and never calls `next`
 * ends the chain.
 */
export function chain(...handlers: RequestHandler[]): RequestHandler {
  return (req: Request, res: Response, done: NextFunction) => {
    let index = 0;
    const next = (error?: unknown): void => {
      if (error !== undefined && error !== null) {
        done(error);
        return;
      }
      const handler = handlers[index++];
      if (handler === undefined) {
        done();
        return;
      }
      try {
        const result: unknown = handler(req, res, next);
        if (result instanceof Promise) result.catch(done);
      } catch (thrown) {
        done(thrown);
      }
    };
    next();
  };
}
