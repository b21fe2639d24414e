import { Router } from 'express';
import type { Request, RequestHandler } from 'express';
import type { Api } from '../messages/statuses';
import type { Metrics, Sender } from './metrics';

/** `GET /metrics` in Prometheus' text format; mounted on the internal listener only. */
export function metricsRoutes({ metrics }: { metrics: Metrics }): Router {
  const router = Router();
  router.get('/metrics', async (_req, res) => {
    const body = await metrics.registry.metrics();
    // Written plainly: Express's res.send would answer `If-None-Match: *` with a 304, which a
    // scrape must never get (and the document does not declare).
    res.statusCode = 200;
    res.setHeader('Content-Type', metrics.registry.contentType);
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(body);
  });
  return router;
}

/**
 * Times a callback to `api` from the moment the app sees it until its answer is written. A
 * 200 is only sent once the event is durable, so for code 200 this is "received → durable ack".
 * Mounted by the callback routes (src/callbacks/callbacks.routes.ts), which know the API.
 * `senderOf` is asked once the answer is written, when the credentials have been checked (or
 * were never reached).
 */
export function ingestLatency(
  metrics: Metrics,
  api: Api,
  senderOf: (req: Request) => Sender,
): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.observeIngest(api, res.statusCode, senderOf(req), seconds);
    });
    next();
  };
}
