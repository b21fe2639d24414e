import { el } from '../dom';
import { overviewFigures } from '../view-model';
import type { StuckNow } from '../view-model';
import type { Stats } from '../wire';

/**
 * Delivery rate, totals and latency of the last 24 hours, and how many messages are stuck now
 * (from the stuck list, not the window: its hint says so), as a description list. Not a live
 * region: screen readers hear the news of these figures from announcer.ts instead.
 */
export function renderOverview(list: HTMLElement, stats: Stats, stuck: StuckNow | undefined): void {
  list.replaceChildren(
    ...overviewFigures(stats, stuck).map((figure) =>
      el('div', { class: 'figure' }, [
        el('dt', {}, [figure.label]),
        el('dd', { 'data-figure': figure.key }, [figure.value]),
        ...(figure.hint ? [el('dd', { class: 'hint' }, [figure.hint])] : []),
      ]),
    ),
  );
}
