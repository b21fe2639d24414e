/**
 * When the page may talk to the API. Pure timing decisions are separate from the browser
 * signals they wait on, so they can be tested without a browser.
 */

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 60_000;

/**
 * Delay before retry number `failures` (1, 2, …): exponential from 1 s, capped at a minute,
 * with jitter (50–100 %) so that many open tabs do not retry in step after an outage. A
 * server's Retry-After, when longer, wins.
 */
export function retryDelayMs(failures: number, retryAfterMs = 0, random = Math.random): number {
  const exponential = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, failures - 1));
  return Math.max(retryAfterMs, Math.round(exponential * (0.5 + random() / 2)));
}

/** The page's environment as far as scheduling cares. */
export interface Environment {
  hidden(): boolean;
  online(): boolean;
  /** Calls `listener` when visibility or connectivity may have changed; returns an unsubscribe. */
  onChange(listener: () => void): () => void;
}

/**
 * Resolves once the tab is visible and the browser online: a hidden or offline tab makes no
 * requests at all (it catches up when it is looked at again).
 */
export function whenActive(env: Environment): Promise<void> {
  if (!env.hidden() && env.online()) return Promise.resolve();
  return new Promise((resolve) => {
    const stop = env.onChange(() => {
      if (env.hidden() || !env.online()) return;
      stop();
      resolve();
    });
  });
}

/** Waits `ms`, or less when `wake` is called (e.g. the tab became visible again). */
export function sleep(ms: number): { done: Promise<void>; wake(): void } {
  let wake = (): void => {};
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  return { done, wake };
}
