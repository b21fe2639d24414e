import { Router } from 'express';
import { z } from 'zod';
import type { Db } from '../db/database';
import { notFound } from '../errors';
import { decodeCursor, encodeCursor } from './cursor';
import { toMessageDto } from './message-dto';
import { findMessageWithHistory, listMessages } from './messages.repository';
import { CANONICAL_STATUSES } from './statuses';

const MessageParams = z.object({ id: z.string().min(1).max(64) });

const ListQuery = z
  .object({
    status: z.enum(CANONICAL_STATUSES as [string, ...string[]]).optional(),
    to: z.string().min(1).max(32).optional(),
    from: z.string().min(1).max(32).optional(),
    api: z.enum(['cxml', 'native']).optional(),
    error_code: z.string().min(1).max(64).optional(),
    since: z.iso.datetime({ offset: true }).optional(),
    until: z.iso.datetime({ offset: true }).optional(),
    stuck: z.enum(['true', 'false']).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    cursor: z.string().optional(),
  })
  // A misspelt filter must not silently return everything.
  .strict();

/** The query API dashboards poll (DESIGN §6). Mounted behind bearer auth. */
export function messageRoutes({ db }: { db: Db }): Router {
  const router = Router();

  router.get('/v1/messages/:id', async (req, res) => {
    const { id } = MessageParams.parse(req.params);
    const found = await findMessageWithHistory(db, id);
    if (!found) throw notFound('message', id);
    res.json(toMessageDto(found.message, found.history));
  });

  router.get('/v1/messages', async (req, res) => {
    const query = ListQuery.parse(req.query);
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    // One extra row tells whether another page exists without a count query.
    const rows = await listMessages(
      db,
      {
        status: query.status,
        to: query.to,
        from: query.from,
        api: query.api,
        errorCode: query.error_code,
        since: query.since ? new Date(query.since) : undefined,
        until: query.until ? new Date(query.until) : undefined,
        stuck: query.stuck === undefined ? undefined : query.stuck === 'true',
      },
      query.limit + 1,
      after,
    );
    const page = rows.slice(0, query.limit);
    const last = page[page.length - 1];
    res.json({
      data: page.map((row) => toMessageDto(row)),
      next_cursor: rows.length > query.limit && last ? encodeCursor(last) : null,
    });
  });

  return router;
}
