import { el } from '../dom';
import type { Child } from '../dom';
import { errorSummary, formatTime, NONE, timeline } from '../view-model';
import type { Message } from '../wire';

/** One message: its current state and its history as a timeline, sources and conflicts marked. */
export function renderMessage(target: HTMLElement, message: Message): void {
  const facts: Array<[string, string]> = [
    ['Status', message.status],
    ['API', message.api],
    ['From', message.from ?? NONE],
    ['To', message.to ?? NONE],
    // The code and its reason, else an error_message that came without a code.
    ['Error', errorSummary(message) ?? NONE],
    ['First seen', formatTime(message.created_at)],
  ];
  const warnings = [
    message.conflict
      ? el('p', { class: 'warning', 'data-warning': 'conflict' }, [
          'Conflict: SignalWire reported two different final statuses for this message.',
        ])
      : null,
    message.stuck
      ? el('p', { class: 'warning', 'data-warning': 'stuck' }, [
          'Stuck: still not final after the last reconciliation lookup.',
        ])
      : null,
  ];
  const entries = timeline(message).map((entry) =>
    el(
      'li',
      {
        class: `event source-${entry.source}${entry.conflicting ? ' conflicting' : ''}`,
        'data-seq': String(entry.seq),
      },
      [
        el('span', { class: 'event-time' }, [entry.time]),
        el('span', { class: 'event-status' }, [entry.status]),
        entry.raw ? el('span', { class: 'event-raw' }, [`(${entry.raw})`]) : null,
        el('span', { class: 'badge', 'data-source': entry.source }, [`via ${entry.source}`]),
        entry.error ? el('span', { class: 'event-error' }, [entry.error]) : null,
        entry.conflicting ? el('strong', { class: 'mark' }, ['conflicting final status']) : null,
        entry.late ? el('em', { class: 'mark' }, ['arrived late']) : null,
      ],
    ),
  );
  target.replaceChildren(
    el('h3', {}, [message.id]),
    ...warnings.filter((w) => w !== null),
    el(
      'dl',
      { class: 'facts' },
      facts.flatMap(([term, value]) => [el('dt', {}, [term]), el('dd', {}, [value])]),
    ),
    el('h4', { id: 'timeline-title' }, ['History']),
    el('ol', { class: 'timeline', 'aria-labelledby': 'timeline-title' }, entries),
  );
}

/** A notice in place of a message: text, or text and elements (an id set apart). */
export function renderLookupMessage(target: HTMLElement, content: string | Child[]): void {
  target.replaceChildren(
    el('p', { class: 'notice' }, typeof content === 'string' ? [content] : content),
  );
}
