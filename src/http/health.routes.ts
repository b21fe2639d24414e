import { Router } from 'express';
import { sql } from 'kysely';
import type { Db } from '../db/database';

export interface Lifecycle {
  /** Set on SIGTERM: readiness fails first so the load balancer stops sending traffic. */
  draining: boolean;
}

/** Liveness says the process is up; readiness says it can do its job (database reachable). */
export function healthRoutes({ db, lifecycle }: { db: Db; lifecycle: Lifecycle }): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    if (lifecycle.draining) {
      res.status(503).json({ status: 'draining' });
      return;
    }
    try {
      await sql`select 1`.execute(db);
      res.json({ status: 'ready', database: 'ok' });
    } catch {
      res.status(503).json({ status: 'unavailable', database: 'unreachable' });
    }
  });
  return router;
}
