import { el, fillTable, messageButton, phoneNumber, word } from '../dom';
import { errorSummary, formatTime, NONE } from '../view-model';
import type { Message, Relay } from '../wire';

type Open = (id: string) => void;

// The code and its reason, else an error_message that came without a code (errorSummary).
const errorOf = (m: Message): string => errorSummary(m) ?? NONE;

/** The latest undelivered and failed messages. */
export function renderFailures(table: HTMLTableElement, messages: Message[], open: Open): void {
  fillTable(
    table,
    ['Last event', 'Message', 'To', 'Status', 'Error'],
    messages.map((m) => [
      formatTime(m.last_event_at),
      messageButton(m.id, open),
      m.to === null ? NONE : phoneNumber(m.to),
      word(m.status),
      errorOf(m),
    ]),
    'No failures.',
  );
}

/** Messages reconciliation gave up on (DESIGN §11). */
export function renderStuck(table: HTMLTableElement, messages: Message[], open: Open): void {
  fillTable(
    table,
    ['Message', 'Status', 'Last event'],
    messages.map((m) => [messageButton(m.id, open), word(m.status), formatTime(m.last_event_at)]),
    'No stuck messages.',
  );
}

/** Relays to apps' own status callbacks that exhausted their retries (DESIGN §10). */
export function renderDeadRelays(table: HTMLTableElement, relays: Relay[], open: Open): void {
  fillTable(
    table,
    ['Message', 'Callback URL', 'Attempts', 'Last error', 'Given up'],
    relays.map((r) => [
      messageButton(r.message_id, open),
      el('span', { class: 'url' }, [r.url]),
      String(r.attempts),
      r.last_error ?? (r.last_status === null ? NONE : `HTTP ${r.last_status}`),
      formatTime(r.updated_at),
    ]),
    'No dead relays.',
  );
}
