import { Router } from 'express';
import type { Db } from '../db/database';
import { UNGATED_READS } from '../db/read-gate';
import type { ReadGate } from '../db/read-gate';
import { READ_STATEMENT_TIMEOUT_MS, readWithin } from '../db/read-timeout';
import { sqlState } from '../db/write-failure';
import { AppError, badRequest, notFound, unavailable } from '../errors';
import { answeredNotModified } from '../http/etag';
import { bearerTokenKey } from '../http/rate-limit';
import { listRelayJobs, retryJob } from './relay.repository';
import type { RetryOutcome } from './relay.repository';
import type { RelayJobRow } from './relay.repository';
import { RelayListQuery, RelayParams } from './relays.schema';
import type { RelayDto } from './relays.schema';

/**
 * `GET /v1/relays?state=&message_id=` and `POST /v1/relays/:id/retry` (DESIGN §10). Mounted
 * behind the query API's bearer auth. The list reads `readDb` (DATABASE_READ_URL's replica when
 * set, DESIGN §13: every open status page polls it, and it may lag a moment like the other
 * lists); a retry is a write and goes to the primary, bounded like a read there: it takes a turn
 * of the primary's reads (`primaryReads`) and runs within `retryTimeoutMs`.
 */
export function relayRoutes({
  db,
  readDb = db,
  onRetried,
  readTimeoutMs = READ_STATEMENT_TIMEOUT_MS,
  retryTimeoutMs = READ_STATEMENT_TIMEOUT_MS,
  reads = UNGATED_READS,
  primaryReads = reads,
}: {
  db: Db;
  readDb?: Db;
  onRetried?: () => void;
  /** The list's statement timeout (readWithin), as for the other lists. */
  readTimeoutMs?: number;
  /** How long a retry may wait for the job's row and the database (retryJob). */
  retryTimeoutMs?: number;
  /** How many of the query API's reads run at once (db/read-gate.ts): the list's. */
  reads?: ReadGate;
  /**
   * The retries' turns, when the list reads another database (a replica): a retry writes on
   * the primary, whose pool the callbacks' commits share, and must not hold more of it than
   * the primary's reads do.
   */
  primaryReads?: ReadGate;
}): Router {
  const router = Router();

  router.get('/v1/relays', async (req, res) => {
    const query = RelayListQuery.parse(req.query);
    const before = query.cursor === undefined ? undefined : decodeRelayCursor(query.cursor);
    // One extra row tells whether another page exists without a count query.
    const filter = { state: query.state, messageId: query.message_id };
    const rows = await reads.run(
      () =>
        readWithin(readDb, readTimeoutMs, (trx) =>
          listRelayJobs(trx, filter, query.limit + 1, before),
        ),
      () => req.socket.destroyed,
      // Each API token its share of the turns (db/read-gate.ts).
      bearerTokenKey(req),
    );
    const page = rows.slice(0, query.limit);
    const last = page[page.length - 1];
    const nextCursor = rows.length > query.limit && last ? encodeRelayCursor(last.id) : null;
    // Every change to a relay moves its updated_at.
    const version = page.map((row) => `${row.id}@${row.updated_at.getTime()}`).join(',');
    if (answeredNotModified(req, res, `${version}|${nextCursor}`)) return;
    res.json({ data: page.map(toRelayDto), next_cursor: nextCursor });
  });

  router.post('/v1/relays/:id/retry', async (req, res) => {
    const { id } = RelayParams.parse(req.params);
    const job = await primaryReads.run(
      () => retryInTime(db, id, retryTimeoutMs),
      () => req.socket.destroyed,
      bearerTokenKey(req),
    );
    if (job === undefined) throw notFound('relay', id);
    if ('refused' in job) throw refusedRetry(id, job);
    onRetried?.();
    res.json(toRelayDto(job.retried));
  });

  return router;
}

function refusedRetry(id: string, outcome: Exclude<RetryOutcome, { retried: unknown }>): AppError {
  if (outcome.refused === 'delivered') {
    return new AppError(
      409,
      'already_delivered',
      `relay ${id} was delivered: only dead and pending relays are retried`,
    );
  }
  const seconds = Math.max(1, Math.ceil(outcome.leaseLeftMs / 1000));
  return new AppError(
    409,
    'being_attempted',
    `relay ${id} is being attempted now: retry it once the attempt ends (its lease ends in ${seconds} s)`,
    undefined,
    { 'Retry-After': String(seconds) },
  );
}

/**
 * retryJob, a retry that ran out of its time (57014) or of the BEGIN's lock_timeout (55P03)
 * answered 503 + Retry-After: in practice another session holds the job's row, and the same
 * retry will do once it lets go.
 */
async function retryInTime(db: Db, id: string, timeoutMs: number): ReturnType<typeof retryJob> {
  try {
    return await retryJob(db, Number(id), timeoutMs);
  } catch (error) {
    const code = sqlState(error);
    if (code !== '57014' && code !== '55P03') throw error;
    throw unavailable(
      `relay ${id} could not be retried in time: another database session holds it; retry later`,
      5,
    );
  }
}

export function toRelayDto(row: RelayJobRow): RelayDto {
  return {
    id: row.id,
    message_id: row.message_id,
    event_seq: row.event_seq,
    url: row.url,
    state: row.state,
    attempts: row.attempts,
    next_attempt_at: row.state === 'pending' ? row.next_attempt_at.toISOString() : null,
    last_status: row.last_status,
    last_error: row.last_error,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    delivered_at: row.delivered_at?.toISOString() ?? null,
  };
}

/** Opaque to clients: base64url of the last id of a page. */
function encodeRelayCursor(id: number): string {
  return Buffer.from(`r${id}`).toString('base64url');
}

function decodeRelayCursor(cursor: string): number {
  const match = /^r([1-9]\d{0,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw badRequest('invalid_cursor', 'The cursor is not one this API issued');
  return Number(match[1]);
}
