import { ApiError, FEED_PAGE_LIMIT, isUnauthorized } from './api-client';
import type { ApiClient } from './api-client';
import { retryDelayMs, sleep, whenActive } from './schedule';
import type { Environment } from './schedule';
import type { FeedEvent } from './wire';

/** How long a long-poll waits for an event (the API allows up to 30 s). */
const LONG_POLL_SECONDS = 25;
/** Panels are revalidated this often even without events (the windows move; relays change). */
export const REFRESH_EVERY_MS = 30_000;
/** Events wake a refresh after this pause, so that a burst of them costs one refresh. */
const SETTLE_MS = 1_000;
/**
 * Events wake a refresh no sooner than this after the last one began. A refresh is five
 * requests (two stats windows, two lists, dead relays); on a busy service, where every feed page brings events, one a second came to about
 * 240 requests a minute per tab with the feed's, and five tabs filled the token's budget. Now
 * a tab asks about 110 a minute: about ten fit. New events still show at once (onEvents).
 */
const EVENT_REFRESH_MIN_INTERVAL_MS = 5_000;
/**
 * After any answer to a long-poll, the next feed request starts no sooner than this after the
 * long-poll did (one that waited this long for its answer is followed at once). The server
 * answers a long-poll as soon as one event is there, so on a busy service asking again at once
 * costs a request per commit — dozens a second, far past the query API's per-token budget
 * (RATE_LIMIT_QUERY_PER_MINUTE, 1 200 a minute by default, shared by every tab and dashboard
 * on the token), until the tab gets 429s. An empty page can come at once too: a draining
 * replica (its feed signal closed on SIGTERM) answers every long-poll with one, and behind a
 * port-forward or a kept-alive connection the next one goes to the same replica — asked again
 * at once, one tab sent 99 requests in 3 s. The panels show events only SETTLE_MS after they
 * arrive anyway: what commits meanwhile comes in the next page. A full page means more are
 * waiting: that one is followed at once. (A request that does not wait — from `now`, or the
 * first after a failure — is always followed by a long-poll, so it needs no pause of its own.)
 */
const FEED_MIN_INTERVAL_MS = SETTLE_MS;

export type LiveState = 'live' | 'reconnecting' | 'paused' | 'offline';

/** While reconnecting: the failure that made the page wait, and when it asks again. */
export interface Retrying {
  /** What the request threw: an ApiError when the service answered, else a network error. */
  error: unknown;
  /** performance.now() of the next attempt (monotonic: a step of the wall clock moves nothing). */
  at: number;
}

export interface LiveDeps {
  api: ApiClient;
  env: Environment;
  /** Reloads every panel (revalidating with ETags). */
  refresh(): Promise<void>;
  /** The panels were just loaded: the first refresh waits its turn. */
  fresh?: boolean;
  /**
   * The first load failed with this error. With a Retry-After (a 503 from a busy replica, a
   * 429) the first refresh waits for it rather than asking again at once.
   */
  failed?: unknown;
  onEvents(events: FeedEvent[]): void;
  /** `retrying` comes with 'reconnecting': of the loops failing, the one that asks again sooner. */
  onState(state: LiveState, retrying?: Retrying): void;
  /** The API refused the token: both loops have stopped. */
  onUnauthorized(): void;
}

/**
 * Keeps the page current without reloads and without hammering the API: one long-poll of the
 * change feed at a time; panel refreshes when events arrive (debounced) or every 30 s;
 * nothing while the tab is hidden or the browser offline; exponential back-off after errors.
 */
export function startLive(deps: LiveDeps): { stop(): void } {
  const { api, env } = deps;
  let stopped = false;
  const abort = new AbortController();
  let nap: ReturnType<typeof sleep> | undefined;
  // The feed's own pauses (between pages, after errors): stop() ends them too.
  let feedNap: ReturnType<typeof sleep> | undefined;
  let settleTimer: ReturnType<typeof setTimeout> | undefined;
  let dirty = false;
  // When the last refresh began (performance.now(): a step of the wall clock must not hold
  // the next one back for as long as the step), for EVENT_REFRESH_MIN_INTERVAL_MS.
  let refreshedAt = -Infinity;
  // A first load refused with Retry-After counts as a failure: neither events nor the tab
  // coming back into view cut its wait short.
  const firstWait = deps.failed instanceof ApiError ? deps.failed.retryAfterMs : undefined;
  let refreshFailures = firstWait ? 1 : 0;
  let feedFailures = 0;
  // Cursors refused in a row (below): each refusal waits longer, like a failure.
  let cursorRefusals = 0;
  // Each loop's latest failure while it is failing.
  let refreshRetrying: Retrying | undefined =
    deps.failed === undefined
      ? undefined
      : { error: deps.failed, at: performance.now() + (firstWait ?? 0) };
  let feedRetrying: Retrying | undefined;
  /** Of the loops failing now, the one that asks again sooner. */
  const retrying = (): Retrying | undefined => {
    const failing = [refreshFailures > 0 ? refreshRetrying : undefined, feedRetrying];
    return failing.reduce<Retrying | undefined>(
      (soonest, one) => (one && (!soonest || one.at < soonest.at) ? one : soonest),
      undefined,
    );
  };

  const report = (): void => {
    if (stopped) return;
    if (!env.online()) deps.onState('offline');
    else if (env.hidden()) deps.onState('paused');
    else if (refreshFailures + feedFailures > 0) deps.onState('reconnecting', retrying());
    else deps.onState('live');
  };
  const unsubscribe = env.onChange(() => {
    report();
    // Back in view: refresh now rather than at the end of the nap.
    if (!env.hidden() && env.online() && refreshFailures === 0) nap?.wake();
  });

  const stop = (): void => {
    stopped = true;
    unsubscribe();
    abort.abort();
    nap?.wake();
    feedNap?.wake();
    clearTimeout(settleTimer);
  };
  const refused = (error: unknown): boolean => {
    if (!isUnauthorized(error)) return false;
    if (!stopped) {
      stop();
      deps.onUnauthorized();
    }
    return true;
  };

  async function refreshLoop(): Promise<void> {
    if (deps.fresh || firstWait) {
      nap = sleep(deps.fresh ? REFRESH_EVERY_MS : firstWait!);
      await nap.done;
    }
    while (!stopped) {
      await whenActive(env);
      if (stopped) return;
      dirty = false;
      let wait = REFRESH_EVERY_MS;
      refreshedAt = performance.now();
      try {
        await deps.refresh();
        refreshFailures = 0;
        refreshRetrying = undefined;
      } catch (error) {
        if (refused(error)) return;
        refreshFailures += 1;
        wait = retryDelayMs(refreshFailures, (error as ApiError).retryAfterMs);
        refreshRetrying = { error, at: performance.now() + wait };
      }
      report();
      nap = sleep(wait);
      await nap.done;
    }
  }

  async function feedLoop(): Promise<void> {
    // The feed from now on: the panels already show everything before.
    let cursor = 'now';
    let following = false;
    while (!stopped) {
      await whenActive(env);
      if (stopped) return;
      // Monotonic, as refreshedAt: with the wall clock stepped back an hour during a long-poll,
      // the pause below lasted the hour, the page still saying it was live.
      const asked = performance.now();
      const from = cursor;
      const longPoll = following;
      try {
        const page = await api.events(cursor, longPoll ? LONG_POLL_SECONDS : 0, abort.signal);
        // Only a cursor of the service's own taken again ends a run of refusals: the request
        // from `now` that follows each refusal is always answered.
        if (from !== 'now') cursorRefusals = 0;
        cursor = page.next_cursor;
        following = true;
        if (feedFailures > 0) {
          feedFailures = 0;
          feedRetrying = undefined;
          report();
        }
        if (page.data.length > 0) {
          deps.onEvents(page.data);
          markDirty();
        }
        // Every long-poll's answer, with events or without (a draining replica's empty pages
        // come at once): only a full page, more waiting behind it, is followed at once.
        if (longPoll && page.data.length < FEED_PAGE_LIMIT) {
          await pause(FEED_MIN_INTERVAL_MS - (performance.now() - asked));
        }
      } catch (error) {
        if (stopped || refused(error)) return;
        const cursorRefused =
          error instanceof ApiError && (error.status === 410 || error.status === 400);
        if (cursorRefused && cursor !== 'now') {
          // The cursor is past use: retention removed events after it (410, a tab left hidden
          // longer than RETENTION_DAYS), the database behind the service is not the one that
          // issued it (410, restored from a dump), or it no longer verifies (400, a rotated
          // secret).
          // Retrying it would fail forever: as the API says, read the state anew (the panels'
          // refresh) and follow the feed from now. (Refused from `now` too, it is not the
          // cursor: that backs off below like any failure, never a loop without a pause.)
          // Not at once, and longer each time it comes again: during a CALLBACK_TOKEN_SECRET
          // rotation rollout behind a load balancer, a replica with the new secret first signs
          // cursors that one still on the old secret refuses, and the request from `now` is
          // answered at once — without a pause a tab went round that circle as fast as the
          // round trips allowed (43 requests in 5 s). The state is not 'reconnecting': the
          // service answers, and the panels are read anew meanwhile.
          cursor = 'now';
          following = false;
          markDirty();
          cursorRefusals += 1;
          await pause(retryDelayMs(cursorRefusals));
          continue;
        }
        feedFailures += 1;
        const retryAfter = error instanceof ApiError ? error.retryAfterMs : undefined;
        const wait = retryDelayMs(feedFailures, retryAfter);
        feedRetrying = { error, at: performance.now() + wait };
        // The next request answers at once, not after a long-poll's 25 s: a service that
        // answers again is said to be live as soon as it does.
        following = false;
        report();
        await pause(wait);
      }
    }
  }

  async function pause(ms: number): Promise<void> {
    if (ms <= 0 || stopped) return;
    feedNap = sleep(ms);
    await feedNap.done;
  }

  function markDirty(): void {
    if (dirty || refreshFailures > 0) return;
    dirty = true;
    const delay = Math.max(
      SETTLE_MS,
      refreshedAt + EVENT_REFRESH_MIN_INTERVAL_MS - performance.now(),
    );
    settleTimer = setTimeout(() => nap?.wake(), delay);
  }

  // 'Live' only once the panels have loaded: after a failed first load the page's own message
  // (what the service answered) stays until the first refresh says better. Hidden or offline
  // is said at once either way.
  if (deps.fresh || env.hidden() || !env.online()) report();
  void refreshLoop();
  void feedLoop();
  return { stop };
}
