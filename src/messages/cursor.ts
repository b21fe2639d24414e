import { z } from 'zod';
import { badRequest } from '../errors';
import type { ListCursor, MessageRow } from './messages.repository';

/**
 * Opaque keyset cursor: base64url of `[last_event_at, id]` of the last row of a page.
 * Anything that does not decode to exactly that shape is a 400, never a query.
 */
const CursorShape = z.tuple([z.iso.datetime(), z.string().min(1).max(64)]);

export function encodeCursor(row: Pick<MessageRow, 'last_event_at' | 'id'>): string {
  return Buffer.from(JSON.stringify([row.last_event_at.toISOString(), row.id])).toString(
    'base64url',
  );
}

export function decodeCursor(cursor: string): ListCursor {
  const invalid = () => badRequest('invalid_cursor', 'The cursor is not one this API issued');
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) throw invalid();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  const parsed = CursorShape.safeParse(value);
  if (!parsed.success) throw invalid();
  return { lastEventAt: new Date(parsed.data[0]), id: parsed.data[1] };
}
