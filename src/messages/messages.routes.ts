import { Router } from 'express';
import type { Db } from '../db/database';
import { badRequest, notFound } from '../errors';
import { answeredNotModified } from '../http/etag';
import { bearerTokenKey } from '../http/rate-limit';
import { ERROR_REASONS_VERSION } from './error-reasons';
import { decodeCursor, encodeCursor } from './cursor';
import { toMessageDto } from './message-dto';
import { UNGATED_READS } from '../db/read-gate';
import type { ReadGate } from '../db/read-gate';
import { READ_STATEMENT_TIMEOUT_MS, readWithin } from '../db/read-timeout';
import { findMessageWithHistory, listMessages } from './messages.repository';
import type { MessageRow } from './messages.repository';
import { ListQuery, MessageParams } from './messages.schema';

/**
 * The query API dashboards poll (DESIGN §6). Mounted behind bearer auth. Lists read from
 * `readDb` (DATABASE_READ_URL's replica when set: a list may lag a moment); a single message is
 * read from the primary, so a caller sees its own send or callback right after it.
 */
export function messageRoutes({
  db,
  readDb = db,
  readTimeoutMs = READ_STATEMENT_TIMEOUT_MS,
  reads = UNGATED_READS,
  primaryReads = reads,
  storeBody = false,
}: {
  db: Db;
  readDb?: Db;
  /** Each read's statement timeout (readWithin): a costly list cannot hold a connection long. */
  readTimeoutMs?: number;
  /** How many of the query API's reads run at once (db/read-gate.ts): the lists'. */
  reads?: ReadGate;
  /**
   * The single message's turns, when it reads another database than the lists (a replica):
   * reads stuck on a replica that stopped answering must not hold up reads of the primary.
   */
  primaryReads?: ReadGate;
  /** STORE_BODY: whether a redacted message shows its empty body (toMessageDto). */
  storeBody?: boolean;
}): Router {
  const router = Router();
  // STORE_BODY changes how a redacted message shows (toMessageDto), and a release can change
  // an error code's reason: a restart that changes either must not have a client's ETag from
  // the run before revalidate to the old shape.
  const shape = `${storeBody ? 'with-body' : 'without-body'}|${ERROR_REASONS_VERSION}`;

  router.get('/v1/messages/:id', async (req, res) => {
    // DESIGN §6: 404 if unknown. An id no message can have (longer than any stored one, or
    // holding a NUL) is unknown without asking the database; its text is not echoed back.
    const params = MessageParams.safeParse(req.params);
    if (!params.success) throw notFound('message', '(no message can have this id)');
    const { id } = params.data;
    const found = await primaryReads.run(
      () => readWithin(db, readTimeoutMs, (trx) => findMessageWithHistory(trx, id)),
      () => req.socket.destroyed,
      // Each API token its share of the turns: another's slow lists cannot keep this one waiting.
      bearerTokenKey(req),
    );
    if (!found) throw notFound('message', id);
    // An event that changes nothing lengthens the history.
    const last = found.history[found.history.length - 1];
    const version = `${shape}|${rowVersion(found.message)}|${found.history.length}|${last?.seq}`;
    if (answeredNotModified(req, res, version)) return;
    res.json(toMessageDto(found.message, found.history, { storeBody }));
  });

  router.get('/v1/messages', async (req, res) => {
    const query = ListQuery.parse(req.query);
    // A reversed window can hold nothing: an empty page would hide the caller's mistake (the
    // stats refuse it too). An empty one (the same instant) is only empty.
    for (const [from, to] of [
      ['since', 'until'],
      ['created_since', 'created_until'],
    ] as const) {
      const start = query[from];
      const end = query[to];
      if (start && end && start > end) {
        throw badRequest('invalid_window', `${from} must not be after ${to}`);
      }
    }
    const { order } = query;
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, order);
    // One extra row tells whether another page exists without a count query.
    const filter = {
      statuses: query.status,
      to: query.to,
      from: query.from,
      apis: query.api,
      errorCodes: query.error_code,
      since: query.since,
      until: query.until,
      createdSince: query.created_since,
      createdUntil: query.created_until,
      stuck: query.stuck,
    };
    const rows = await reads.run(
      () =>
        readWithin(readDb, readTimeoutMs, (trx) =>
          listMessages(trx, filter, query.limit + 1, { order, after }),
        ),
      () => req.socket.destroyed,
      bearerTokenKey(req),
    );
    const page = rows.slice(0, query.limit);
    const last = page[page.length - 1];
    const nextCursor =
      rows.length > query.limit && last
        ? encodeCursor(order, {
            at: order === 'created' ? last.created_at : last.last_event_at,
            id: last.id,
          })
        : null;
    const version = page.map(rowVersion).join(',');
    if (answeredNotModified(req, res, `${shape}|${version}|${nextCursor}`)) return;
    res.json({
      data: page.map((row) => toMessageDto(row, undefined, { storeBody })),
      next_cursor: nextCursor,
    });
  });

  return router;
}

/**
 * What a message's answer depends on, short. Every transaction of the write path that changes
 * a message stamps its id in applied_tx (updated_at alone would not do: two writes within one
 * millisecond leave it as it was, and a client would keep the older answer on a 304);
 * reconciliation's lookups do not (src/reconcile writes only its sweep columns), but each one
 * stamps sweep_checked_at, and stuck changes only with a lookup or a new event.
 */
function rowVersion(row: MessageRow): string {
  const checked = row.sweep_checked_at?.getTime() ?? '';
  return `${row.id}@${row.applied_tx}|${row.updated_at.getTime()}|${checked}|${row.sweep_step}|${row.stuck ? 1 : 0}`;
}
