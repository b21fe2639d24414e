import { statsNews, toldAfter } from './view-model';
import type { StuckNow, Told } from './view-model';
import type { Stats } from './wire';

/**
 * News of the figures is said at most this often. A screen reader reads a polite live region
 * when the reader pauses; on a busy service the figures change with every refresh (every 5 s),
 * and even news worth saying (the rate moving a point) may come faster than anyone wants it.
 */
export const ANNOUNCE_EVERY_MS = 60_000;

/**
 * Tells a screen reader about the figures (through `say`, the page's polite live region): the
 * summary once, then only news (view-model.ts statsNews), at most once a minute. News that
 * comes sooner waits: it is weighed again with the next figures, changed or not, and said
 * once the minute is up if it still is news. `stuck`: how many are stuck now, from the stuck
 * list (view-model.ts StuckNow), undefined until that list has answered.
 */
export function createStatsAnnouncer(
  say: (text: string) => void,
  // Monotonic: with the wall clock stepped back, news would wait as long as the step.
  now: () => number = () => performance.now(),
): { stats(stats: Stats, stuck: StuckNow | undefined): void } {
  let told: Told | undefined;
  let saidAt = -Infinity;
  return {
    stats(stats, stuck) {
      const news = statsNews(told, stats, stuck);
      const said = news !== null && now() - saidAt >= ANNOUNCE_EVERY_MS;
      if (said) {
        say(news);
        saidAt = now();
      }
      told = toldAfter(told, stats, stuck, said);
    },
  };
}
