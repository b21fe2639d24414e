// Edge cases of src/feed/feed-cursor.ts: each test kills mutants that survived
// test/unit/feed-and-stats.test.ts (StrykerJS, 2026-12-07). Pure, no database.
import { createHmac } from 'node:crypto';
import {
  FEED_RESET,
  FEED_START,
  comparePositions,
  feedCursors,
  laterOf,
} from '../../src/feed/feed-cursor';
import { AppError } from '../../src/errors';

const secret = 'feed-secret-0123456789';
const cursors = feedCursors([secret]);
// A payload signed as the service signs (its key label is the wire format every replica and
// version shares): what a cursor of another version, or a malformed one, would look like.
function signed(payload: string): string {
  const key = createHmac('sha256', secret).update('sw-status change feed cursor v1').digest();
  const mac = createHmac('sha256', key).update(payload).digest().subarray(0, 16);
  return `${Buffer.from(payload).toString('base64url')}.${mac.toString('base64url')}`;
}
function refused(cursor: string): AppError {
  try {
    cursors.decode(cursor);
  } catch (error) {
    if (error instanceof AppError) return error;
    throw error;
  }
  throw new Error(`accepted ${cursor}`);
}

describe('feed cursors (edge cases)', () => {
  test('When positions share a transaction, then the seq orders them; laterOf picks the later', () => {
    expect(comparePositions({ tx: '7', seq: 3 }, { tx: '7', seq: 5 })).toBe(-1);
    expect(comparePositions({ tx: '7', seq: 5 }, { tx: '7', seq: 3 })).toBe(1);
    expect(comparePositions({ tx: '6', seq: 9 }, { tx: '7', seq: 1 })).toBe(-1);
    const a = { tx: '7', seq: 3 };
    const b = { tx: '7', seq: 5 };
    expect(laterOf(a, b)).toBe(b);
    expect(laterOf(b, a)).toBe(b);
    expect(laterOf(a, { ...a })).toBe(a);
  });

  test('When FEED_START and FEED_RESET are used, then they are the very first and beyond every position', () => {
    expect(FEED_START).toEqual({ tx: '0', seq: 0 });
    expect(comparePositions(FEED_RESET, { tx: '18446744073709551614', seq: 2 ** 40 })).toBe(1);
  });

  test('When no secret is configured, then cursors cannot be made', () => {
    expect(() => feedCursors([])).toThrow('feed cursors need at least one secret');
  });

  test('When a cursor of the wire format is presented, then it decodes (the key label is part of the format)', () => {
    expect(cursors.decode(signed('12.3'))).toEqual({ tx: '12', seq: 3 });
    expect(cursors.decode(signed('12.3.15.4.s123'))).toEqual({
      tx: '12',
      seq: 3,
      removedSeen: { tx: '15', seq: 4 },
      removalStep: 123,
    });
  });

  test('When a cursor is refused, then it is a 400 telling the consumer to start again', () => {
    const error = refused('nope');
    expect(error).toMatchObject({ status: 400, code: 'invalid_cursor' });
    expect(error.message).toBe('The cursor is not one this API issued; start again with after=now');
  });

  test('When encode gets a step but no removal beyond and no keepStep, then it issues the short form', () => {
    const at = { tx: '12', seq: 3 };
    expect(cursors.decode(cursors.encode(at, undefined, 3))).toEqual(at);
    // A removal seen AT the position is not beyond it: short form too.
    expect(cursors.decode(cursors.encode(at, { ...at }))).toEqual(at);
    // keepStep: the long form, the position standing for what was seen.
    expect(cursors.decode(cursors.encode(at, undefined, 3, true))).toEqual({
      ...at,
      removedSeen: at,
      removalStep: 3,
    });
    // keepStep without a step: nothing to keep, the short form.
    expect(cursors.decode(cursors.encode(at, undefined, undefined, true))).toEqual(at);
    // A removal beyond and a step: both kept.
    expect(cursors.decode(cursors.encode(at, { tx: '13', seq: 0 }, 7))).toEqual({
      ...at,
      removedSeen: { tx: '13', seq: 0 },
      removalStep: 7,
    });
  });

  test('When a genuine cursor has junk around it, then it is refused', () => {
    const good = cursors.encode({ tx: '12', seq: 3 });
    refused(`${good}x`);
    refused(`!${good}`);
  });

  test('When a signed payload is not a form this service issues, then it is refused as a 400 (never a crash)', () => {
    for (const payload of [
      '12', // 1 field
      '12.3.4', // 3 fields
      '12.3.15.4.s1.9', // 6 fields
      'a5.3', // not a tx
      '12.3a',
      '5a.3',
      '12.1e3', // Number() would read these
      '12.-5',
      '12.0x10',
      'x.1.2.3', // bad position with a good removedSeen
      '12.3.15.4.s01', // steps: no leading zero, digits only, anchored, no sign
      '12.3.15.4.xs5',
      '12.3.15.4.s5x',
      '12.3.15.4.s-1',
      '18446744073709551616.0', // 2^64: beyond xid8
      '12.9007199254740993', // not a safe integer
    ]) {
      expect(refused(signed(payload))).toMatchObject({ status: 400, code: 'invalid_cursor' });
    }
    expect(cursors.decode(signed('18446744073709551615.0'))).toEqual({
      tx: '18446744073709551615',
      seq: 0,
    });
  });
});
