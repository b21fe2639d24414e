import { Router } from 'express';
import type { Db } from '../db/database';
import { AppError } from '../errors';
import { answeredNotModified } from '../http/etag';
import { ERROR_REASONS_VERSION, errorReason } from '../messages/error-reasons';
import { FEED_START, comparePositions, feedCursors, laterOf } from './feed-cursor';
import type { FeedCursor, FeedPosition } from './feed-cursor';
import { createFeedReads } from './feed-reads';
import type { FeedFilter, FeedPage, FeedRow } from './feed.repository';
import { FeedQuery } from './feed.schema';
import type { FeedEventDto } from './feed.schema';
import type { FeedSignal } from './feed-signal';

// A filtered page looks at up to this many events, or `limit` if larger (about a millisecond of the database's
// time), then answers with what it found and a cursor after what it looked at — a long-poll
// too: it waits only once a look has reached the horizon.
const FILTERED_SCAN = 500;
// A wake-up that finds nothing new while a transaction is open (mayBeHeldBack) means an older
// transaction may hold the feed back: the next looks follow on a timer, 25 ms, 50 ms, … up to
// 1 s apart, not on every commit.
const FRUITLESS_BACKOFF_MS = 25;
// How long a hot standby gets to replay up to a cursor beyond its snapshot before the cursor
// is refused: one issued from a less delayed snapshot (another standby behind the same
// DATABASE_READ_URL, the primary during a rollout) is ahead by the replay delay, well under a
// second on a healthy standby. Past this, the consumer starts over: a resync, never a loss.
const STANDBY_CATCH_UP_MS = 5_000;

export interface FeedDeps {
  db: Db;
  signal: FeedSignal;
  /** CALLBACK_TOKEN_SECRET: the cursors' MAC keys. */
  secrets: readonly string[];
  /** Page reads at once per process (feed-reads.ts); the rest queue, identical ones shared. */
  concurrentReads: number;
}

/** GET /v1/events: the change feed (DESIGN §6). Mounted behind bearer auth. */
export function feedRoutes({ db, signal, secrets, concurrentReads }: FeedDeps): Router {
  const reads = createFeedReads(db, concurrentReads);
  const router = Router();
  const cursors = feedCursors(secrets);

  router.get('/v1/events', async (req, res) => {
    const query = FeedQuery.parse(req.query);
    const filter: FeedFilter = { statuses: query.status, apis: query.api };
    const filtered = Boolean(query.status?.length || query.api?.length);
    const scanLimit = filtered ? Math.max(FILTERED_SCAN, query.limit) : query.limit;
    const closedByClient = new AbortController();
    res.on('close', () => closedByClient.abort());
    const clientGone = closedByClient.signal;

    // The consumer's own cursor, when it gave one (not `now`, nor none for the start).
    const cursor = query.after === 'now' ? undefined : query.after;
    const given = cursor !== undefined;
    let position: FeedPosition;
    // What retention had removed when this consumer was last judged (its cursor's).
    let judged: Judged | undefined;
    if (query.after === 'now') {
      const end = await reads.end(clientGone);
      // The client went away while the read waited for its turn: nobody to answer.
      if (end === undefined) return;
      position = end;
    } else if (cursor === undefined) position = FEED_START;
    else ({ judged, position } = fromCursor(cursors.decode(cursor)));

    // Monotonic: with the wall clock stepped back (NTP, a resumed VM), a long-poll timed on it
    // waited for the step's length instead of `wait`.
    const started = performance.now();
    const deadline = started + query.wait * 1000;
    // > 0 once a commit was announced but is not visible yet: an older transaction still holds
    // the horizon. Look again after this long (doubling up to 1 s), whatever wakes meanwhile.
    let recheck = 0;
    // Commits announced before the last read began (FeedSignal.commits): one announced during
    // it woke nobody, and the read may have missed it — the wait then ends at once.
    let seen = signal.commits;
    const firstPage = await reads.read(position, filter, query.limit, scanLimit, clientGone);
    if (firstPage === undefined) return;
    let page = firstPage;
    // Retention (src/retention) removed events after this cursor: the consumer would miss them.
    if (judged) refuseExpired(position, judged, page);
    // Removals up to here are judged (a cursor) or none of the consumer's business (no cursor,
    // or `now`: the retained history, as found). Only a removal after this look can step over
    // it, now or on a later request: the cursor handed back says which (feed-cursor.ts).
    judged = judgedThrough(judged ?? { removedSeen: position }, page);
    // The consumer's cursor lies beyond what this database has reached: true until a snapshot
    // has caught up with it (only ever on a standby; see refuseUnreached).
    let unreached = given && refuseUnreached(position, page);
    position = nextPosition(position, page, query.limit, scanLimit);
    // While the cursor is beyond a standby's snapshot, the request waits for its replay (up to
    // STANDBY_CATCH_UP_MS, whatever `wait` says); once reached, the long-poll goes on as asked.
    const until = (): number => (unreached ? started + STANDBY_CATCH_UP_MS : deadline);
    // Wait only while the last look reached the horizon: after a full filtered scan without a
    // match, the empty page and its cursor go back now, as without wait, so that one request
    // reads a bounded number of events, not the whole history FILTERED_SCAN at a time.
    while (
      page.rows.length === 0 &&
      page.scanned < scanLimit &&
      performance.now() < until() &&
      !closedByClient.signal.aborted
    ) {
      const remaining = until() - performance.now();
      let committed = false;
      // Everything up to the horizon was looked at: wait for a commit (or look on a timer).
      // Either wait ends when the signal closes (shutdown: the client moves to a replica that
      // stays) or the client goes away.
      if (recheck > 0) {
        const why = await signal.sleep(Math.min(recheck, remaining), closedByClient.signal);
        if (why === 'closed') break;
      } else {
        // Woken by a commit, or by the process's look tick with every other waiting long-poll.
        const why = await signal.nextLook(remaining, closedByClient.signal, seen);
        if (why === 'closed') break;
        committed = why === 'commit';
      }
      seen = signal.commits;
      const next = await reads.read(position, filter, query.limit, scanLimit, clientGone);
      // The client went away while the read waited for its turn: nobody to answer.
      if (next === undefined) return;
      page = next;
      // Retention may have removed events past this position while the long-poll waited (an
      // old message's events replayed from a spool, then removed): the same 410, or the
      // cursor handed back would step over them unnoticed.
      refuseExpired(position, judged, page);
      judged = judgedThrough(judged, page);
      if (unreached) unreached = refuseUnreached(position, page);
      position = nextPosition(position, page, query.limit, scanLimit);
      if (page.scanned > 0 || !mayBeHeldBack(page)) recheck = 0;
      else if (committed || recheck > 0) {
        recheck = Math.min(Math.max(2 * recheck, FRUITLESS_BACKOFF_MS), 1_000);
      }
    }
    if (closedByClient.signal.aborted) return;
    // The standby did not replay up to the cursor in time. (When shutdown ended the wait, the
    // empty page and the same cursor go back: the replica the client moves to judges anew.)
    if (unreached && !signal.closed) throw unreachedCursor(true);

    // A step beyond the position (a feed reset's, src/feed/feed-epoch.ts): the cursor must say
    // it was judged against it, or the next request refuses it as one from before the reset.
    const keepStep = judged.keepStep || stepBeyond(page, position);
    const nextCursor = cursors.encode(position, judged.removedSeen, judged.step, keepStep);
    // The reasons' version: an upgrade that adds one changes the events' error_reason.
    const version = `${nextCursor}|${page.rows.length}|${ERROR_REASONS_VERSION}`;
    if (answeredNotModified(req, res, version)) return;
    // A plain Node write: Express's json() would check freshness and the content type again.
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.end(JSON.stringify({ data: page.rows.map(toFeedEventDto), next_cursor: nextCursor }));
  });

  return router;
}

/**
 * What retention had removed when a consumer was last judged: by its cursor, then by each page
 * read for it. Removals up to then are not looked at again: a consumer that began after them
 * reads the retained history, whose events interleave in feed order with the removed ones (a
 * message first seen long ago and active today), without a 410.
 */
interface Judged {
  /** The expiry mark then (sw_status_retention): the newest event removed, or the position. */
  removedSeen: FeedPosition;
  /** The newest removal step then (sw_status_feed_removals); none in a previous version's cursor. */
  step?: number;
  /**
   * The cursor carried its step although the mark was not beyond it: a step beyond its position
   * was seen (a feed reset's), or a page read for it showed no step as new as its own (a
   * standby that has not replayed the reset yet). Kept in the cursor handed back even when a
   * page read on such a standby does not show that step.
   */
  keepStep?: boolean;
}

function fromCursor({ removedSeen, removalStep, ...position }: FeedCursor) {
  const seen = removedSeen ?? position;
  const judged: Judged = {
    removedSeen: seen,
    step: removalStep,
    keepStep: removalStep !== undefined && comparePositions(seen, position) <= 0,
  };
  return { judged, position };
}

/** Whether one of the page's removal steps lies beyond `position`. */
function stepBeyond(page: FeedPage, position: FeedPosition): boolean {
  return page.removalSteps.some(({ removed }) => comparePositions(removed, position) > 0);
}

/** `judged` once `page` has been read: every removal its snapshot saw is judged. */
function judgedThrough(judged: Judged, page: FeedPage): Judged {
  const newest = page.removalSteps.at(-1)?.step ?? 0;
  return {
    removedSeen: laterOf(judged.removedSeen, page.removedThrough),
    // Never back: a standby's snapshot may trail the one that judged the cursor.
    step: Math.max(judged.step ?? 0, newest),
    // A step newer than any the page shows: the page was read on a standby behind the snapshot
    // that judged the cursor (a feed reset not replayed yet). Dropping the step there would make
    // the next request, on a server that has it, refuse the cursor as one from before it.
    keepStep: judged.keepStep || (judged.step ?? 0) > newest,
  };
}

/**
 * 410 cursor_expired when retention removed events after `position` since the consumer was
 * last judged (or a feed reset, src/feed/feed-epoch.ts, says it may have missed any), as the
 * page's own snapshot saw it: a removal committed after that snapshot left this page whole (it
 * still held the events), and the next request sees it.
 */
function refuseExpired(position: FeedPosition, judged: Judged, page: FeedPage): void {
  if (!missedRemoval(position, judged, page)) return;
  throw new AppError(
    410,
    'cursor_expired',
    'events after this cursor were removed by retention (RETENTION_DAYS), or it was issued ' +
      'before a failover, point-in-time recovery or restore of the database: read the current ' +
      'state from /v1/messages, then follow the feed from after=now',
  );
}

/**
 * Whether a removal made since `judged` took an event after `position`. Two records answer:
 * - the steps (db/migrations/0013), exactly: one after the judged step whose newest removed
 *   event lies after the position. A step whose row is gone was covered by a later step that
 *   removed an event at or beyond its own, so that later one answers for it;
 * - the expiry mark, for what it can tell: raised since then, to beyond the position. It is all
 *   a cursor of the previous version carries (no step), the rule that version judges by; and
 *   during a rolling upgrade it also catches removals by that version's pods, which record no
 *   step. A removal below the mark does not move it: only the steps see it.
 * A cursor without a step (the short form, or the previous version's long one) is also refused
 * when a step removed beyond both its position and its mark: every step recorded before it was
 * issued lay at or below the mark it was judged against (a step raises the mark with it), so
 * such a step came later. That is how a feed reset (FEED_RESET, src/feed/feed-epoch.ts)
 * refuses every stepless cursor from before it; for retention's steps the mark says the same.
 */
function missedRemoval(position: FeedPosition, judged: Judged, page: FeedPage): boolean {
  const mark = page.removedThrough;
  if (comparePositions(mark, judged.removedSeen) > 0 && comparePositions(position, mark) < 0) {
    return true;
  }
  const since = judged.step;
  if (since === undefined) {
    return stepBeyond(page, laterOf(position, judged.removedSeen));
  }
  return page.removalSteps.some(
    ({ step, removed }) => step > since && comparePositions(removed, position) > 0,
  );
}

/**
 * A validly signed cursor beyond the snapshot's xmax was not issued by this cluster: another
 * deployment's (sharing CALLBACK_TOKEN_SECRET), or this database's before a restore (a logical
 * dump restarts transaction ids lower) or a failover that lost transactions. Events committed
 * from now on get lower ids, so its consumer would silently miss every one until the ids catch
 * up. 410 cursor_expired, as for a cursor retention overtook, because the documented answer
 * to it — read the current state, then follow from after=now — is the one such a consumer
 * needs: it has missed events, and its state may hold some this database no longer has. A 400
 * would call the cursor forged, which it is not, and say only to start from now.
 *
 * A hot standby's snapshot trails the primary's, so a cursor issued from a less delayed one is
 * beyond it for a moment: there it is held while the standby replays (up to
 * STANDBY_CATCH_UP_MS) and refused only if still beyond. Returns whether it is held.
 */
function refuseUnreached(position: FeedPosition, page: FeedPage): boolean {
  if (comparePositions(position, { tx: page.issuedBefore, seq: 0 }) <= 0) return false;
  if (page.standby) return true;
  throw unreachedCursor(false);
}

/** `standby`: judged on a read replica, after waiting STANDBY_CATCH_UP_MS for it to replay. */
function unreachedCursor(standby: boolean): AppError {
  const where = standby
    ? `this read replica has replayed within ${STANDBY_CATCH_UP_MS / 1_000} s (a replica ` +
      'lagging further behind the one that issued it, '
    : 'this database has reached (';
  return new AppError(
    410,
    'cursor_expired',
    `this cursor is beyond every position ${where}a cursor of another deployment, or from ` +
      'before the database was restored): read the current state from /v1/messages, then ' +
      'follow the feed from after=now',
  );
}

/**
 * Whether a commit announced before this page's read can still be invisible to it. On a
 * primary only when a transaction was open at its snapshot (xmin < xmax): one that started
 * before the commit holds the horizon. With none open, a wake-up that finds nothing was for
 * a commit already read (a hint arriving late, the LISTEN connection coming back), and the
 * long-poll goes on waiting for commits rather than looking on a timer that would answer the
 * next one up to a second late. A standby may not have replayed the commit yet.
 */
function mayBeHeldBack(page: FeedPage): boolean {
  return page.standby || page.horizon !== page.issuedBefore;
}

/**
 * Where the consumer is after this page: its last event when the page is full, else after
 * everything looked at; when the look reached the horizon, the horizon itself (no event with
 * a lower transaction id can appear any more). Never behind where it was: a replica whose
 * snapshot lags the one that issued the cursor answers an empty page, not old events.
 */
export function nextPosition(
  after: FeedPosition,
  page: FeedPage,
  limit: number,
  scanLimit: number,
): FeedPosition {
  const last = page.rows[page.rows.length - 1];
  if (page.rows.length === limit && last) return { tx: last.tx, seq: last.seq };
  const looked = page.lastScanned ? laterOf(after, page.lastScanned) : after;
  if (page.scanned >= scanLimit) return looked;
  return laterOf(looked, { tx: page.horizon, seq: 0 });
}

function toFeedEventDto(row: FeedRow): FeedEventDto {
  return {
    seq: row.seq,
    message_id: row.message_id,
    api: row.api,
    status: row.status,
    raw_status: row.raw_status,
    error_code: row.error_code,
    error_reason: errorReason(row.api, row.error_code),
    error_message: row.error_message,
    source: row.source,
    provider_timestamp: row.provider_timestamp?.toISOString() ?? null,
    received_at: row.received_at.toISOString(),
    message_status: row.message_status,
  };
}
