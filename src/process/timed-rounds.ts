/**
 * A background job's rounds on a timer (the stats compactor, retention, the feed epoch check):
 * the next round `intervalMs` after the last one ended — or as long as the round says, or
 * never again when it says 'stop' — so that two never run at once. On setTimeout, which is
 * monotonic: a stepped wall clock neither hurries nor delays a round. The timer is unref'd (it
 * keeps no process alive); stop() waits for the round under way to end.
 */
export interface TimedRounds {
  stop(): Promise<void>;
}

/** What a round returns: nothing (the usual interval), the next delay, or 'stop'. */
export type RoundEnd = number | 'stop' | void;

export function startTimedRounds(
  round: () => Promise<RoundEnd>,
  { firstDelayMs, intervalMs }: { firstDelayMs: number; intervalMs: number },
): TimedRounds {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;

  const schedule = (delayMs: number): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      timer = null;
      let next: RoundEnd;
      running = round()
        .then((end) => {
          next = end;
        })
        .finally(() => {
          running = null;
          if (next === 'stop') stopped = true;
          else schedule(next ?? intervalMs);
        });
    }, delayMs);
    timer.unref();
  };
  schedule(firstDelayMs);

  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
