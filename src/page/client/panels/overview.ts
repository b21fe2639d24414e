import { el } from '../dom';
import { announcement, overviewFigures } from '../view-model';
import type { Stats } from '../wire';

/** Delivery rate, totals and latency of the last 24 hours, as a description list. */
export function renderOverview(list: HTMLElement, announcer: HTMLElement, stats: Stats): void {
  list.replaceChildren(
    ...overviewFigures(stats).map((figure) =>
      el('div', { class: 'figure' }, [
        el('dt', {}, [figure.label]),
        el('dd', { 'data-figure': figure.key }, [figure.value]),
      ]),
    ),
  );
  announcer.textContent = announcement(stats);
}
