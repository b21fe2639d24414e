import { createHmac, timingSafeEqual } from 'node:crypto';
import { NEVER_ISSUED_TX } from '../db/removal-steps';
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

/**
 * The position a feed reset's removal step records (src/feed/feed-epoch.ts): beyond every
 * event, so every cursor issued before the reset is refused (src/feed/feed.routes.ts). The
 * largest xid8, which no transaction ever gets; the seq the largest a JavaScript number holds
 * exactly (not bigint's: the steps reach the route as JSON numbers, and a cursor's seq is a
 * safe integer). Retention's steps record real events, below it: the reset's row stays until
 * the next reset covers it.
 */
export const FEED_RESET: FeedPosition = {
  tx: NEVER_ISSUED_TX,
  seq: Number.MAX_SAFE_INTEGER,
};

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
 * The payload is `tx.seq` when nothing retention removed lies beyond the position: any later
 * removal beyond it raises the expiry mark above it, which the route sees. Otherwise it also
 * carries what its consumer was judged against (FeedCursor): `tx.seq.removedTx.removedSeq.sSTEP`.
 * So does every cursor issued once a feed reset's step (FEED_RESET) lies beyond it — on a
 * database that had one, every cursor — with the expiry mark as removedTx.removedSeq, or the
 * position itself when the mark is not beyond it: a cursor without a step is refused once a
 * step lies beyond it (src/feed/feed.routes.ts).
 * The previous version issued and reads `tx.seq` and `tx.seq.removedTx.removedSeq` (no step);
 * this one reads them too, by its rule (src/feed/feed.routes.ts), and issues the long form
 * only with the step. In a rolling upgrade a pod of the previous version refuses that form
 * as invalid (400: the consumer starts again from after=now): only consumers below a removal
 * (reading history retention has passed over) get it, and a caught-up consumer's cursor is
 * the short form both read. The `s` keeps a payload of five numbers one this API never issued.
 */
export interface FeedCursors {
  /** `keepStep`: the long form, with the step, even when removedSeen is not beyond the position. */
  encode(
    position: FeedPosition,
    removedSeen?: FeedPosition,
    removalStep?: number,
    keepStep?: boolean,
  ): string;
  /** Throws a 400 for anything this service did not issue. */
  decode(cursor: string): FeedCursor;
}

/**
 * A decoded cursor: its position and, when the cursor says so, what retention had removed
 * when its consumer was last judged — the newest event (none: the position itself, removals
 * up to it cannot have been missed) and the newest removal step (sw_status_feed_removals; none
 * in a cursor of the previous version).
 */
export interface FeedCursor extends FeedPosition {
  removedSeen?: FeedPosition;
  removalStep?: number;
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
    encode(position, removedSeen, removalStep, keepStep = false) {
      const payload = payloadOf(position, removedSeen, removalStep, keepStep);
      return `${Buffer.from(payload).toString('base64url')}.${mac(keys[0]!, payload).toString('base64url')}`;
    },
    decode(cursor) {
      // Up to 128 characters: the longest payload (two 20-digit tx, two 16-digit seq, a
      // 16-digit step, its `s` and four dots: 93) is 124 in base64url; with the MAC 147,
      // within `after`'s 200 (feed.schema.ts).
      const match = /^([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{22})$/.exec(cursor);
      if (!match) throw invalid();
      const payload = Buffer.from(match[1]!, 'base64url').toString('latin1');
      const given = Buffer.from(match[2]!, 'base64url');
      if (given.length !== 16 || !keys.some((key) => timingSafeEqual(mac(key, payload), given))) {
        throw invalid();
      }
      const decoded = cursorOf(payload.split('.'));
      if (decoded === null) throw invalid();
      return decoded;
    },
  };
}

/** The long form only when a removal lies beyond the position (see FeedCursors). */
function payloadOf(
  { tx, seq }: FeedPosition,
  removedSeen: FeedPosition | undefined,
  removalStep: number | undefined,
  keepStep: boolean,
): string {
  const beyond = removedSeen !== undefined && comparePositions(removedSeen, { tx, seq }) > 0;
  const withStep = keepStep && removalStep !== undefined;
  if (!beyond && !withStep) return `${tx}.${seq}`;
  const seen = beyond ? removedSeen : { tx, seq };
  const long = `${tx}.${seq}.${seen.tx}.${seen.seq}`;
  // Without a step: the previous version's long form (tests make them to stand for its cursors).
  return removalStep === undefined ? long : `${long}.s${removalStep}`;
}

/** A payload's fields as a cursor, or null when they are none this service issues. */
function cursorOf(fields: string[]): FeedCursor | null {
  if (![2, 4, 5].includes(fields.length)) return null;
  const position = positionOf(fields);
  if (position === null || fields.length === 2) return position;
  const removedSeen = positionOf(fields.slice(2));
  if (removedSeen === null) return null;
  if (fields.length === 4) return { ...position, removedSeen };
  const removalStep = stepOf(fields[4]!);
  return removalStep === null ? null : { ...position, removedSeen, removalStep };
}

/** `sSTEP` as the step number, or null. */
function stepOf(field: string): number | null {
  if (!/^s(0|[1-9]\d{0,15})$/.test(field)) return null;
  const step = Number(field.slice(1));
  return Number.isSafeInteger(step) ? step : null;
}

/** `[tx, seq]` (the first two of `fields`) as a position, or null when they are not one. */
function positionOf([tx = '', seq = '']: string[]): FeedPosition | null {
  if (!/^(0|[1-9]\d{0,19})$/.test(tx) || !/^(0|[1-9]\d{0,15})$/.test(seq)) return null;
  if (BigInt(tx) > MAX_XID8 || !Number.isSafeInteger(Number(seq))) return null;
  return { tx, seq: Number(seq) };
}
