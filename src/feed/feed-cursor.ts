import { createHmac, timingSafeEqual } from 'node:crypto';
import { badRequest } from '../errors';

/**
 * A position in the change feed: the last event a consumer has, as (transaction id, seq) —
 * the feed's order (src/feed/feed.repository.ts). tx is an xid8, kept as its decimal text.
 */
export interface FeedPosition {
  tx: string;
  seq: number;
}

export const FEED_START: FeedPosition = { tx: '0', seq: 0 };

/** Orders two positions as the feed does. */
export function comparePositions(a: FeedPosition, b: FeedPosition): number {
  const tx = BigInt(a.tx) - BigInt(b.tx);
  if (tx !== 0n) return tx < 0n ? -1 : 1;
  return Math.sign(a.seq - b.seq);
}

export function laterOf(a: FeedPosition, b: FeedPosition): FeedPosition {
  return comparePositions(a, b) >= 0 ? a : b;
}

/**
 * Cursors are opaque and signed: `base64url(tx.seq).mac`, the MAC an HMAC-SHA256 (truncated
 * to 128 bits) under a key derived from CALLBACK_TOKEN_SECRET, so that every replica accepts
 * every other's cursors and a made-up one is refused (400) instead of silently skipping or
 * replaying events. All configured secrets verify; the first signs (rotation). A signature
 * says who issued a cursor, not for which database: one beyond what this database has reached
 * is refused by the route (410, src/feed/feed.routes.ts).
 *
 * The payload is `tx.seq`, or `tx.seq.removedTx.removedSeq` when the consumer has already been
 * judged against a retention removal beyond its position (FeedCursor.removedSeen). Only that
 * second form is new, and it is issued only where the `tx.seq` form would be refused 410 by
 * the same rule (src/feed/feed.routes.ts): a pod of an earlier version, which refuses the long
 * form as invalid (400), costs a consumer in a rolling upgrade nothing it had not lost anyway.
 */
export interface FeedCursors {
  encode(position: FeedPosition, removedSeen?: FeedPosition): string;
  /** Throws a 400 for anything this service did not issue. */
  decode(cursor: string): FeedCursor;
}

/**
 * A decoded cursor: its position and, when the cursor says so, the newest event retention had
 * removed when its consumer was last judged (none: the position itself — removals up to it
 * cannot have been missed).
 */
export interface FeedCursor extends FeedPosition {
  removedSeen?: FeedPosition;
}

const KEY_LABEL = 'sw-status change feed cursor v1';
const MAX_XID8 = 2n ** 64n - 1n;

export function feedCursors(secrets: readonly string[]): FeedCursors {
  const keys = secrets.map((secret) => createHmac('sha256', secret).update(KEY_LABEL).digest());
  if (keys.length === 0) throw new Error('feed cursors need at least one secret');
  const mac = (key: Buffer, payload: string): Buffer =>
    createHmac('sha256', key).update(payload).digest().subarray(0, 16);
  const invalid = () =>
    badRequest(
      'invalid_cursor',
      'The cursor is not one this API issued; start again with after=now',
    );
  return {
    encode({ tx, seq }, removedSeen) {
      const beyond = removedSeen !== undefined && comparePositions(removedSeen, { tx, seq }) > 0;
      const payload = beyond ? `${tx}.${seq}.${removedSeen.tx}.${removedSeen.seq}` : `${tx}.${seq}`;
      return `${Buffer.from(payload).toString('base64url')}.${mac(keys[0]!, payload).toString('base64url')}`;
    },
    decode(cursor) {
      const match = /^([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{22})$/.exec(cursor);
      if (!match) throw invalid();
      const payload = Buffer.from(match[1]!, 'base64url').toString('latin1');
      const given = Buffer.from(match[2]!, 'base64url');
      if (given.length !== 16 || !keys.some((key) => timingSafeEqual(mac(key, payload), given))) {
        throw invalid();
      }
      const fields = payload.split('.');
      const position = fields.length === 2 || fields.length === 4 ? positionOf(fields) : null;
      if (position === null) throw invalid();
      if (fields.length === 2) return position;
      const removedSeen = positionOf(fields.slice(2));
      if (removedSeen === null) throw invalid();
      return { ...position, removedSeen };
    },
  };
}

/** `[tx, seq]` (the first two of `fields`) as a position, or null when they are not one. */
function positionOf([tx = '', seq = '']: string[]): FeedPosition | null {
  if (!/^(0|[1-9]\d{0,19})$/.test(tx) || !/^(0|[1-9]\d{0,15})$/.test(seq)) return null;
  if (BigInt(tx) > MAX_XID8 || !Number.isSafeInteger(Number(seq))) return null;
  return { tx, seq: Number(seq) };
}
