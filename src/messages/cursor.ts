import { z } from 'zod';
import { badRequest } from '../errors';
import { storableText } from '../http/query-params';
import type { ListCursor, ListOrder } from './messages.repository';

/**
 * Opaque keyset cursor of the message list: base64url of `[sort key, id]` of the last row of
 * a page — `[last_event_at, id]` for order=activity, `["created", created_at, id]` for
 * order=created. Anything that does not decode to the shape of the requested order is a 400,
 * never a query.
 */
const ActivityCursor = z.tuple([z.iso.datetime(), storableText(64)]);
const CreatedCursor = z.tuple([z.literal('created'), z.iso.datetime(), storableText(64)]);

export function encodeCursor(order: ListOrder, cursor: ListCursor): string {
  const key = [cursor.at.toISOString(), cursor.id];
  return Buffer.from(JSON.stringify(order === 'created' ? ['created', ...key] : key)).toString(
    'base64url',
  );
}

export function decodeCursor(cursor: string, order: ListOrder): ListCursor {
  const invalid = () =>
    badRequest('invalid_cursor', 'The cursor is not one this API issued for this order');
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) throw invalid();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (order === 'created') {
    const parsed = CreatedCursor.safeParse(value);
    if (!parsed.success) throw invalid();
    return { at: new Date(parsed.data[1]), id: parsed.data[2] };
  }
  const parsed = ActivityCursor.safeParse(value);
  if (!parsed.success) throw invalid();
  return { at: new Date(parsed.data[0]), id: parsed.data[1] };
}
