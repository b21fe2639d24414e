import { Router } from 'express';
import type { Db } from '../db/database';
import { badRequest } from '../errors';
import { answeredNotModified } from '../http/etag';
import { bearerTokenKey } from '../http/rate-limit';
import { UNGATED_READS } from '../db/read-gate';
import type { ReadGate } from '../db/read-gate';
import { READ_STATEMENT_TIMEOUT_MS, asQueryTimeout, readWithin } from '../db/read-timeout';
import { countStuck, readEdges, readRollups } from './stats.repository';
import { StatsQuery } from './stats.schema';
import { MAX_SERIES_POINTS, planWindow, seriesPoints, summarize } from './stats-summary';

const DEFAULT_WINDOW_MS = 24 * 3_600_000;
const LAST_INSTANT = Date.parse('9999-12-31T23:59:59.999Z');

/** GET /v1/stats (DESIGN §6). Mounted behind bearer auth; its ETag hashes the (small) body. */
export function statsRoutes({
  db,
  clock = () => new Date(),
  readTimeoutMs = READ_STATEMENT_TIMEOUT_MS,
  reads = UNGATED_READS,
}: {
  db: Db;
  clock?: () => Date;
  /** Each read's statement timeout: a window costlier than expected cannot hold the pool. */
  readTimeoutMs?: number;
  /** How many of the query API's reads run at once (db/read-gate.ts); a stats request is one. */
  reads?: ReadGate;
}) {
  const router = Router();
  router.get('/v1/stats', async (req, res) => {
    const query = StatsQuery.parse(req.query);
    const until = (query.created_until ?? clock()).getTime();
    const since = query.created_since?.getTime() ?? until - DEFAULT_WINDOW_MS;
    if (since >= until) {
      // Without created_until the window ends now: say so, not name a parameter never sent.
      throw badRequest(
        'invalid_window',
        query.created_until
          ? 'created_since must be before created_until'
          : 'created_since must be in the past when created_until is not given (the window ends now)',
      );
    }
    if (until > LAST_INSTANT) {
      // An offset can carry 9999-12-31 past the year 9999, which ISO 8601 (and the answer's
      // created_until) cannot write with four digits.
      throw badRequest('invalid_window', 'created_until must be before the year 10000');
    }
    if (query.bucket && seriesPoints(since, until, query.bucket) > MAX_SERIES_POINTS) {
      throw badRequest(
        'too_many_buckets',
        `The series would have more than ${MAX_SERIES_POINTS} points: choose a larger bucket or a shorter window`,
      );
    }
    const plan = planWindow(since, until, query.bucket);
    const filter = { apis: query.api, bucket: query.bucket };
    // Two transactions, one after the other in one turn of the gate: the turn stands for one
    // connection (a quarter of the pool for all reads), and two at once would hold two. The
    // edges and the stuck count (messages, a few ms each) share the second.
    const [rollups, [edges, stuck]] = await reads.run(
      async () => {
        const rollups = await readRollups(db, plan, filter, readTimeoutMs).catch(
          (error: unknown) => {
            throw asQueryTimeout(error, readTimeoutMs);
          },
        );
        const rest = await readWithin(db, readTimeoutMs, async (trx) => {
          const edges = await readEdges(trx, plan.edges, filter);
          return [edges, await countStuck(trx, since, until, filter)] as const;
        });
        return [rollups, rest] as const;
      },
      () => req.socket.destroyed,
      // Each API token its share of the turns (db/read-gate.ts).
      bearerTokenKey(req),
    );
    const summary = summarize(
      { since, until, bucket: query.bucket, stuck },
      [...rollups.counts, ...edges.counts],
      [...rollups.series, ...edges.series],
      rollups.latency,
    );
    const body = JSON.stringify(summary);
    // A window that ends "now" (no created_until) has new bounds on every request: they stay out
    // of the ETag, so a client revalidating an open window gets a 304 while the counts (and the
    // series' buckets) are the same. A bound the client gave is part of what it asked for.
    const compared = {
      ...summary,
      created_since: query.created_since === undefined ? null : summary.created_since,
      created_until: query.created_until === undefined ? null : summary.created_until,
    };
    if (answeredNotModified(req, res, JSON.stringify(compared))) return;
    res.type('json').send(body);
  });
  return router;
}
