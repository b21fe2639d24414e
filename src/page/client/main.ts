import { createStatsAnnouncer } from './announcer';
import { ApiError, answeredStatus, createApiClient, isUnauthorized } from './api-client';
import { byId } from './dom';
import { REFRESH_EVERY_MS, startLive } from './live';
import type { LiveState } from './live';
import { lookupPanel } from './lookup';
import { renderErrors, renderStatuses } from './panels/breakdowns';
import { renderDeadRelays, renderFailures, renderStuck } from './panels/lists';
import { renderOverview } from './panels/overview';
import { createThroughputChart } from './panels/throughput';
import { browserEnvironment } from './browser-environment';
import { forgetToken, readToken, saveToken } from './token-store';
import {
  STUCK_LISTED,
  STUCK_PAGE,
  formatTime,
  retryingText,
  stuckNow,
  tokenProblem,
  updatedText,
  windows,
} from './view-model';
import type { StuckNow } from './view-model';
import type { Stats } from './wire';
import './page.css';

/**
 * The status page (DESIGN §12): asks for an API token once per tab session, then shows the
 * query API's figures and follows the change feed. Every request goes to this page's origin.
 */

const STATE_TEXT: Record<LiveState, string> = {
  live: 'Live',
  // Said with why and when (retryingText): this only if neither is known.
  reconnecting: 'Retrying…',
  paused: 'Paused while the tab is hidden',
  offline: 'Offline, waiting for the network',
};

/**
 * Figures older than this are marked out of date: a refresh comes at least every
 * REFRESH_EVERY_MS while the page is live, so one missed refresh is not yet cause for alarm.
 */
const STALE_AFTER_MS = 2 * REFRESH_EVERY_MS;
/** How often the page checks whether its figures have gone out of date. */
const STALE_CHECK_MS = 5_000;

let live: { stop(): void } | undefined;
/**
 * Which sign-in is current. The token form stays usable while a sign-in's first load runs (a
 * second Enter, a corrected token), and signing out can come then too: a sign-in that is no
 * longer current when its first load ends starts nothing, or its loops would go on with a
 * token the reader dropped, and set "Live" above the token form.
 */
let signIn = 0;

/**
 * One chart for the page's life, drawn again by every sign-in: each chart listens to the
 * window's resizes, and one made per sign-in would leave its listener and canvas behind.
 */
let throughputChart: ReturnType<typeof createThroughputChart> | undefined;
function chart(): ReturnType<typeof createThroughputChart> {
  throughputChart ??= createThroughputChart(byId('throughput-chart'), byId('throughput-summary'));
  return throughputChart;
}

/** Stops whatever the current sign-in runs, or will once its first load ends. */
function signOut(): void {
  signIn++;
  live?.stop();
  live = undefined;
}

function askForToken(problem?: string): void {
  signOut();
  byId('dashboard').hidden = true;
  byId('change-token').hidden = true;
  byId('updated').hidden = true;
  byId('token-panel').hidden = false;
  byId('live-state').textContent = problem ? 'Not signed in' : 'Enter an API token';
  byId('token-error').textContent = problem ?? '';
  const input = byId<HTMLInputElement>('token-input');
  input.setAttribute('aria-invalid', problem ? 'true' : 'false');
  if (problem) input.setAttribute('aria-describedby', 'token-error');
  input.focus();
}

const REFUSED =
  'The service refused this token (401 Unauthorized): it is not one of its API_TOKENS. Check it and try again.';

async function open(token: string): Promise<void> {
  // Ends the sign-in before this one: this one is `signIn` from here on.
  signOut();
  const current = signIn;
  const api = createApiClient(token);
  // A token the client could not even send (UnsendableTokenError) was not refused by the
  // service: the reader is told what is wrong with it instead.
  const refused = tokenProblem(token) ?? REFUSED;
  const state = byId('live-state');
  state.textContent = 'Connecting…';
  const lookup = lookupPanel(api, () => {
    forgetToken();
    askForToken(refused);
  });
  const announcer = createStatsAnnouncer((text) => {
    byId('announce').textContent = text;
  });
  // When the last refresh that got every answer ended: the browser's wall clock (the dashboard's
  // data-updated) and its monotonic one, to time staleness by (showUpdated), and the service's,
  // to show (the page's other times are the service's).
  let updated: { at: number; monotonic: number; serverAt: number } | undefined;
  const showUpdated = (): void => {
    if (!updated || current !== signIn) return;
    // Either clock may say so: the monotonic one when the wall clock stepped back, the wall
    // clock after the machine slept (most browsers stop performance.now() meanwhile: last
    // night's figures would read as current until another minute passed awake).
    const age = Math.max(performance.now() - updated.monotonic, Date.now() - updated.at);
    const stale = age > STALE_AFTER_MS;
    const shown = byId('updated');
    const text = updatedText(updated.serverAt, stale);
    if (shown.textContent !== text) shown.textContent = text;
    shown.classList.toggle('stale', stale);
    shown.hidden = false;
    byId('dashboard').dataset.stale = String(stale);
  };

  // The last stats drawn and how many messages are stuck now (the stuck list's count): the
  // overview shows both, and either may change without the other.
  let shownStats: Stats | undefined;
  let stuckCount: StuckNow | undefined;

  const refresh = async (): Promise<void> => {
    // The service's now, not the browser's: a slow laptop clock would end the windows early.
    const asked = windows(api.serverNow());
    // Each answer is drawn as it is, even when another read failed (a 503 from the read gate,
    // a query_timeout): the client remembers every answer it got with its ETag, so the next
    // refresh gets a 304 for it — an answer not drawn now would never be drawn.
    const answers = await Promise.allSettled([
      api.stats(asked.day),
      api.stats(asked.hour),
      api.messages({ status: 'failed,undelivered', limit: '10' }),
      // A page of them, counted for the Stuck tile (stats' `stuck` counts only those first
      // seen in the window, which a message has all but always left once it goes stuck).
      api.messages({ stuck: 'true', limit: String(STUCK_PAGE) }),
      api.deadRelays(),
    ]);
    // Signed out (or in afresh) meanwhile: these answers belong to a page no longer shown.
    if (current !== signIn) return;
    const [, , failures, stuck, relays] = answers;
    let [stats, perMinute] = answers;
    // These answers may have set the page's clock (server-clock.ts), the first ones always do:
    // windows asked by a browser clock that is off are asked again at once, by the service's.
    // Only the windows: the lists' answers stand (asked again, they would be 304s not drawn).
    // Only when both were answered: a refused read (a 503 with Retry-After) is asked again by
    // the next refresh, with the service's windows, when the service said to.
    const now = windows(api.serverNow());
    const answered = stats.status === 'fulfilled' && perMinute.status === 'fulfilled';
    if (answered && now.day.created_until !== asked.day.created_until) {
      [stats, perMinute] = await Promise.allSettled([api.stats(now.day), api.stats(now.hour)]);
      if (current !== signIn) return;
    }
    const stuckChanged = stuck.status === 'fulfilled' && stuck.value.changed;
    if (stuck.status === 'fulfilled') stuckCount = stuckNow(stuck.value.body);
    // Every answer, changed or not: news held back by the once-a-minute limit is said later.
    if (stats.status === 'fulfilled') announcer.stats(stats.value.body, stuckCount);
    if (stats.status === 'fulfilled' && stats.value.changed) {
      shownStats = stats.value.body;
      renderStatuses(byId<HTMLTableElement>('statuses'), stats.value.body);
      renderErrors(byId<HTMLTableElement>('errors'), stats.value.body);
    }
    if (shownStats && ((stats.status === 'fulfilled' && stats.value.changed) || stuckChanged)) {
      renderOverview(byId('overview'), shownStats, stuckCount);
    }
    if (perMinute.status === 'fulfilled' && perMinute.value.changed) {
      chart().render(perMinute.value.body);
    }
    if (failures.status === 'fulfilled' && failures.value.changed) {
      renderFailures(byId('failures'), failures.value.body.data, lookup.show);
    }
    if (stuck.status === 'fulfilled' && stuck.value.changed) {
      renderStuck(byId('stuck'), stuck.value.body.data.slice(0, STUCK_LISTED), lookup.show);
    }
    if (relays.status === 'fulfilled' && relays.value.changed) {
      renderDeadRelays(byId('relays'), relays.value.body.data, lookup.show);
    }
    const errors = [stats, perMinute, failures, stuck, relays].flatMap((answer) =>
      answer.status === 'rejected' ? [answer.reason as unknown] : [],
    );
    // A refused token first: it stops the page whichever read said so.
    if (errors.length > 0) throw errors.find(isUnauthorized) ?? errors[0];
    updated = { at: Date.now(), monotonic: performance.now(), serverAt: api.serverNow() };
    byId('dashboard').dataset.updated = new Date(updated.at).toISOString();
    showUpdated();
  };

  let loaded = false;
  let failed: unknown;
  try {
    // The first load shows whether the token works before the page is revealed.
    await refresh();
    loaded = true;
  } catch (error) {
    if (current !== signIn) return;
    if (isUnauthorized(error)) {
      forgetToken();
      askForToken(refused);
      return;
    }
    failed = error;
    // The first refresh comes after Retry-After, else at once (live.ts).
    const wait = error instanceof ApiError ? (error.retryAfterMs ?? 0) : 0;
    state.textContent = retryingText(answeredStatus(error), wait);
  }
  if (current !== signIn) return;
  byId('token-panel').hidden = true;
  byId('dashboard').hidden = false;
  byId('change-token').hidden = false;
  lookup.followLink();
  window.onhashchange = () => lookup.followLink();

  const following = startLive({
    api,
    env: browserEnvironment(),
    refresh,
    // Loaded just now: the next refresh waits for events or its period; failed: retry soon.
    fresh: loaded,
    ...(failed !== undefined && { failed }),
    onEvents: (events) => {
      const last = events[events.length - 1];
      if (last) byId('dashboard').dataset.lastEvent = formatTime(last.received_at);
      lookup.onEvents(events.map((event) => event.message_id));
    },
    onState: (current, retrying) => {
      // A 503 or 429 is the service answering "not now", not a lost connection: said apart.
      const text = retrying
        ? retryingText(answeredStatus(retrying.error), retrying.at - performance.now())
        : STATE_TEXT[current];
      if (state.textContent !== text) state.textContent = text;
    },
    onUnauthorized: () => {
      forgetToken();
      askForToken(refused);
    },
  });
  // A page whose requests all hang hears of no failure until their deadlines (api-client.ts);
  // the time shown turns to "Not updated since" on its own clock.
  const staleCheck = setInterval(showUpdated, STALE_CHECK_MS);
  // Signed out: neither the feed nor a lookup waiting to be asked again goes on.
  live = {
    stop() {
      following.stop();
      lookup.cancel();
      clearInterval(staleCheck);
    },
  };
}

function start(): void {
  const form = byId<HTMLFormElement>('token-form');
  form.onsubmit = (event) => {
    event.preventDefault();
    const token = byId<HTMLInputElement>('token-input').value.trim();
    if (!token) return;
    // Refused here, with why: such a token cannot even be sent (tokenProblem).
    const problem = tokenProblem(token);
    if (problem) {
      askForToken(problem);
      return;
    }
    saveToken(token);
    void open(token);
  };
  byId('change-token').onclick = () => {
    forgetToken();
    byId<HTMLInputElement>('token-input').value = '';
    askForToken();
  };
  byId('lookup-result').tabIndex = -1;
  const token = readToken();
  const problem = token && tokenProblem(token);
  if (problem) {
    // Kept by a page from before that check.
    forgetToken();
    askForToken(problem);
  } else if (token) void open(token);
  else askForToken();
}

start();
