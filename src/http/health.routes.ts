import { Router } from 'express';
import type { Response } from 'express';
import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { InFlight } from '../process/in-flight';
import type { DatabaseReadiness, DatabaseReadinessReport } from '../db/database-readiness';
import type { IngestStatus } from '../ingest/group-commit-recorder';

export interface Lifecycle {
  /** Set on SIGTERM: readiness fails first so the load balancer stops sending traffic. */
  draining: boolean;
  /** The ingest path's state, when it has an outage spool (src/ingest). */
  ingest?: { status(): IngestStatus };
  /** First contact and schema version (src/db/database-readiness.ts); main.ts always sets it. */
  database?: DatabaseReadiness;
  /**
   * Set on SIGTERM (process/shutdown.ts): when the open connections will be cut at the latest, on
   * performance.now()'s clock (monotonic: an NTP step does not move it).
   * A send that could not have SignalWire's answer back by then is not forwarded (src/proxy).
   */
  connectionsCutAt?: number;
  /** The send proxy's sends under way: the cut waits for them, up to connectionsCutAt. */
  sends?: InFlight;
}

/** Liveness says the process is up; readiness says it can do its job (database reachable). */
export function healthRoutes({
  db,
  lifecycle,
  onReadiness,
}: {
  db: Db;
  lifecycle: Lifecycle;
  /** Told every readiness answer (the metrics' readiness gauge). */
  /** `database`: what this answer found of the database (absent while draining: not asked). */
  onReadiness?: (ready: boolean, database?: 'ok' | 'unreachable') => void;
}): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    answer(res, 200, { status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    if (lifecycle.draining) {
      onReadiness?.(false);
      answer(res, 503, { status: 'draining' });
      return;
    }
    // While the database is down, a pod with a working spool still accepts callbacks
    // durably, so it stays ready: taking every replica out of the load balancer would turn a
    // database outage into lost callbacks. Known-down skips the query (its connect timeout
    // would outlast the probe's). A pod that has never reached its database, or has found a
    // schema it cannot run on, is never ready (lifecycle.database).
    const ingest = lifecycle.ingest?.status();
    const spool = ingest && ingest.spool.state !== 'disabled' ? ingest.spool : undefined;
    const knownDown = ingest?.database === 'unreachable';
    const {
      database,
      ready: schemaReady = true,
      ...gate
    } = lifecycle.database
      ? await lifecycle.database.check({ knownDown })
      : { database: knownDown ? 'unreachable' : await selectOne(db) };
    const ready =
      schemaReady && (database === 'ok' || (spool !== undefined && spool.state !== 'failing'));
    onReadiness?.(ready, database);
    answer(res, ready ? 200 : 503, {
      status: ready ? 'ready' : 'unavailable',
      database,
      ...('schema' in gate && { schema: wireSchema(gate.schema) }),
      ...('reason' in gate && gate.reason !== undefined && { reason: gate.reason }),
      ...(spool && { spool }),
    });
  });
  return router;
}

/**
 * A plain Node write, never Express's json(): that checks the request's freshness, and
 * `If-None-Match: *` (or a matching ETag) would turn a probe's answer into a 304 without a
 * body, which a health check never is.
 */
function answer(res: Response, status: number, body: Record<string, unknown>): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(body));
}

/** JSON fields are snake_case (DESIGN §6): the verdict's `oldestReader` is `oldest_reader`. */
function wireSchema(verdict: DatabaseReadinessReport['schema']): Record<string, unknown> {
  if (!('oldestReader' in verdict)) return verdict;
  const { oldestReader, ...rest } = verdict;
  return { ...rest, oldest_reader: oldestReader };
}

function selectOne(db: Db): Promise<'ok' | 'unreachable'> {
  return sql`select 1`.execute(db).then(
    () => 'ok' as const,
    () => 'unreachable' as const,
  );
}
