import { ApiError, isUnauthorized } from './api-client';
import type { ApiClient } from './api-client';
import { retryDelayMs, sleep, whenActive } from './schedule';
import type { Environment } from './schedule';
import type { FeedEvent } from './wire';

/** How long a long-poll waits for an event (the API allows up to 30 s). */
const LONG_POLL_SECONDS = 25;
/** Panels are revalidated this often even without events (the windows move; relays change). */
const REFRESH_EVERY_MS = 30_000;
/** Events wake a refresh after this pause, so that a burst of them costs one refresh. */
const SETTLE_MS = 1_000;

export type LiveState = 'live' | 'reconnecting' | 'paused' | 'offline';

export interface LiveDeps {
  api: ApiClient;
  env: Environment;
  /** Reloads every panel (revalidating with ETags). */
  refresh(): Promise<void>;
  /** The panels were just loaded: the first refresh waits its turn. */
  fresh?: boolean;
  onEvents(events: FeedEvent[]): void;
  onState(state: LiveState): void;
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
  let dirty = false;
  let refreshFailures = 0;
  let feedFailures = 0;

  const report = (): void => {
    if (stopped) return;
    if (!env.online()) deps.onState('offline');
    else if (env.hidden()) deps.onState('paused');
    else deps.onState(refreshFailures + feedFailures > 0 ? 'reconnecting' : 'live');
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
    if (deps.fresh) {
      nap = sleep(REFRESH_EVERY_MS);
      await nap.done;
    }
    while (!stopped) {
      await whenActive(env);
      if (stopped) return;
      dirty = false;
      let wait = REFRESH_EVERY_MS;
      try {
        await deps.refresh();
        refreshFailures = 0;
      } catch (error) {
        if (refused(error)) return;
        refreshFailures += 1;
        wait = retryDelayMs(refreshFailures, (error as ApiError).retryAfterMs);
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
      try {
        const page = await api.events(cursor, following ? LONG_POLL_SECONDS : 0, abort.signal);
        cursor = page.next_cursor;
        following = true;
        if (feedFailures > 0) {
          feedFailures = 0;
          report();
        }
        if (page.data.length > 0) {
          deps.onEvents(page.data);
          markDirty();
        }
      } catch (error) {
        if (stopped || refused(error)) return;
        const cursorRefused =
          error instanceof ApiError && (error.status === 410 || error.status === 400);
        if (cursorRefused && cursor !== 'now') {
          // The cursor is past use: retention removed events after it (410, a tab left hidden
          // longer than RETENTION_DAYS), or it no longer verifies (400, a rotated secret).
          // Retrying it would fail forever: as the API says, read the state anew (the panels'
          // refresh) and follow the feed from now. (Refused from `now` too, it is not the
          // cursor: that backs off below like any failure, never a loop without a pause.)
          cursor = 'now';
          following = false;
          markDirty();
          continue;
        }
        feedFailures += 1;
        report();
        const retryAfter = error instanceof ApiError ? error.retryAfterMs : undefined;
        await sleep(retryDelayMs(feedFailures, retryAfter)).done;
      }
    }
  }

  function markDirty(): void {
    if (dirty || refreshFailures > 0) return;
    dirty = true;
    setTimeout(() => nap?.wake(), SETTLE_MS);
  }

  report();
  void refreshLoop();
  void feedLoop();
  return { stop };
}
