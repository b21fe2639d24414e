import type { Logger } from '../logger';

/**
 * At most `perMinute` log lines a minute of each kind an anonymous client can cause (a refused
 * callback by its reason, a request answered 4xx by its status): past it, lines of that kind
 * are counted, not written, and one line at the minute's end says how many of each were left
 * out. A flood of forged callbacks from many addresses must not become an equal flood of log
 * lines — disk, the log pipeline's bill, and pino's synchronous writes to stdout on the event
 * loop — while the first lines of each kind still show what happened (the metrics count every
 * request). Kinds must come from a bounded set (reason codes, status codes), never from input.
 */
export interface LogBudget {
  /** Whether a line of `kind` may be written now; if not, it is counted as left out. */
  allows(kind: string): boolean;
}

export const LOG_LINES_PER_MINUTE = 20;
const WINDOW_MS = 60_000;

export function createLogBudget(
  logger: Logger,
  // Monotonic: a wall clock stepped back an hour would make one "minute" last that hour.
  { perMinute = LOG_LINES_PER_MINUTE, now = () => performance.now() } = {},
): LogBudget {
  let windowEnd = 0;
  let written = new Map<string, number>();
  let leftOut = new Map<string, number>();
  let summaryTimer: NodeJS.Timeout | undefined;

  const summarise = (): void => {
    if (summaryTimer !== undefined) clearTimeout(summaryTimer);
    summaryTimer = undefined;
    // The minute is over, whoever noticed first: its timer, or the next line asked for.
    windowEnd = 0;
    if (leftOut.size === 0) return;
    logger.warn(
      { left_out: Object.fromEntries(leftOut), per_minute: perMinute },
      'log lines left out: more of these kinds than allowed in a minute (the metrics count each)',
    );
    leftOut = new Map();
  };

  return {
    allows(kind) {
      const at = now();
      if (at >= windowEnd) {
        summarise();
        written = new Map();
        windowEnd = at + WINDOW_MS;
      }
      const count = written.get(kind) ?? 0;
      if (count < perMinute) {
        written.set(kind, count + 1);
        return true;
      }
      leftOut.set(kind, (leftOut.get(kind) ?? 0) + 1);
      // Said at the window's end even when nothing comes after it; never keeps the process up.
      summaryTimer ??= setTimeout(summarise, Math.max(0, windowEnd - at)).unref();
      return false;
    },
  };
}
