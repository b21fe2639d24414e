import { fillTable, word } from '../dom';
import { errorRows, formatCount, statusRows } from '../view-model';
import type { Stats } from '../wire';

/** Counts by current status. */
export function renderStatuses(table: HTMLTableElement, stats: Stats): void {
  fillTable(
    table,
    ['Status', 'Messages'],
    statusRows(stats).map((row) => [word(row.status), formatCount(row.count)]),
    'No messages yet.',
  );
}

/** Messages by error code, with SignalWire's reason for the code. */
export function renderErrors(table: HTMLTableElement, stats: Stats): void {
  fillTable(
    table,
    ['Code', 'Reason', 'API', 'Messages', 'Share'],
    errorRows(stats).map((row) => [
      row.code,
      row.reason,
      word(row.api),
      formatCount(row.count),
      row.share,
    ]),
    'No errors.',
  );
}
