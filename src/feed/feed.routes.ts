import { Router } from 'express';
import type { Db } from '../db/database';
import { AppError } from '../errors';
import { answeredNotModified } from '../http/etag';
import { errorReason } from '../messages/error-reasons';
import { FEED_START, comparePositions, feedCursors, laterOf } from './feed-cursor';
import type { FeedPosition } from './feed-cursor';
import { feedEnd, readFeedPage } from './feed.repository';
import type { FeedFilter, FeedPage, FeedRow } from './feed.repository';
import { FeedQuery } from './feed.schema';
import type { FeedEventDto } from './feed.schema';
import type { FeedSignal } from './feed-signal';

// A filtered page looks at up to this many events for its matches (about a millisecond of the
// database's time), then answers with what it found and a cursor after what it looked at.
const FILTERED_SCAN = 500;
// A wake-up that finds nothing new means an older transaction still holds the feed back: the
// next looks follow on a timer, 25 ms, 50 ms, … up to 1 s apart, not on every commit.
const FRUITLESS_BACKOFF_MS = 25;

export interface FeedDeps {
  db: Db;
  signal: FeedSignal;
  /** CALLBACK_TOKEN_SECRET: the cursors' MAC keys. */
  secrets: readonly string[];
}

/** GET /v1/events: the change feed (DESIGN §6). Mounted behind bearer auth. */
export function feedRoutes({ db, signal, secrets }: FeedDeps): Router {
  const router = Router();
  const cursors = feedCursors(secrets);

  router.get('/v1/events', async (req, res) => {
    const query = FeedQuery.parse(req.query);
    const filter: FeedFilter = { statuses: query.status, apis: query.api };
    const filtered = Boolean(query.status?.length || query.api?.length);
    const scanLimit = filtered ? Math.max(FILTERED_SCAN, query.limit) : query.limit;
    const closedByClient = new AbortController();
    res.on('close', () => closedByClient.abort());

    let position: FeedPosition;
    if (query.after === 'now') position = await feedEnd(db);
    else position = query.after === undefined ? FEED_START : cursors.decode(query.after);

    const deadline = Date.now() + query.wait * 1000;
    // > 0 once a commit was announced but is not visible yet: an older transaction still holds
    // the horizon. Look again after this long (doubling up to 1 s), whatever wakes meanwhile.
    let recheck = 0;
    let page = await readFeedPage(db, position, filter, query.limit, scanLimit);
    // Retention (src/retention) removed events after this cursor: the consumer would miss them.
    if (query.after !== undefined && query.after !== 'now') refuseExpired(position, page);
    position = nextPosition(position, page, query.limit, scanLimit);
    while (page.rows.length === 0 && Date.now() < deadline && !closedByClient.signal.aborted) {
      let committed = false;
      // Everything up to the horizon was looked at: wait for a commit (or look on a timer).
      if (page.scanned < scanLimit) {
        const remaining = deadline - Date.now();
        if (recheck > 0) {
          await pause(Math.min(recheck, remaining));
        } else {
          const why = await signal.next(
            Math.min(signal.pollInterval(), remaining),
            closedByClient.signal,
          );
          if (why === 'closed') break;
          committed = why === 'commit';
        }
      }
      page = await readFeedPage(db, position, filter, query.limit, scanLimit);
      // Retention may have removed events past this position while the long-poll waited (an
      // old message's events replayed from a spool, then removed): the same 410, or the
      // cursor handed back would step over them unnoticed.
      refuseExpired(position, page);
      position = nextPosition(position, page, query.limit, scanLimit);
      if (page.scanned > 0) recheck = 0;
      else if (committed || recheck > 0) {
        recheck = Math.min(Math.max(2 * recheck, FRUITLESS_BACKOFF_MS), 1_000);
      }
    }
    if (closedByClient.signal.aborted) return;

    const nextCursor = cursors.encode(position);
    if (answeredNotModified(req, res, `${nextCursor}|${page.rows.length}`)) return;
    // A plain Node write: Express's json() would check freshness and the content type again.
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.end(JSON.stringify({ data: page.rows.map(toFeedEventDto), next_cursor: nextCursor }));
  });

  return router;
}

/**
 * 410 cursor_expired for a cursor before the newest event retention removed, as the page's own
 * snapshot saw it: a removal committed after that snapshot left this page whole (it still held
 * the events), and the next request sees it.
 */
function refuseExpired(position: FeedPosition, page: FeedPage): void {
  if (comparePositions(position, page.removedThrough) >= 0) return;
  throw new AppError(
    410,
    'cursor_expired',
    'events after this cursor were removed by retention (RETENTION_DAYS): read the current ' +
      'state from /v1/messages, then follow the feed from after=now',
  );
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

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
