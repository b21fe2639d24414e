import { STATUS_RANK, TERMINAL_RANK } from '../../messages/statuses';
import type { CanonicalStatus } from '../../messages/statuses';
import type { HistoryEntry, Message, MessagePage, Stats } from './wire';

/**
 * The API's answers turned into what the panels show: pure functions, no DOM (unit tested in
 * test/page/view-model.test.ts). The panels only put these strings into text nodes.
 */

export const NONE = '—';

export function formatShare(share: number | null): string {
  return share === null ? NONE : `${(share * 100).toFixed(1)} %`;
}

export function formatDuration(ms: number | null): string {
  if (ms === null) return NONE;
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** Times in UTC, as the API gives them: operators compare them with logs and SignalWire's. */
export function formatTime(iso: string | null): string {
  if (!iso) return NONE;
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

export interface Figure {
  /** Stable key: the test and the DOM find a figure by it. */
  key: string;
  label: string;
  value: string;
  /** What the figure counts, when its label and the panel's title do not say it. */
  hint?: string;
}

/**
 * The stuck messages the page asks for (`GET /v1/messages?stuck=true`): one page, counted for
 * the Stuck tile; the stuck list panel shows the first STUCK_LISTED of them.
 */
export const STUCK_PAGE = 100;
export const STUCK_LISTED = 10;

/**
 * How many messages are stuck now: the page of the stuck list, `more` when it was full and said
 * there are more (its next_cursor). Not GET /v1/stats's `stuck`, which counts the stuck messages
 * first seen in the window (DESIGN §6): a message goes stuck only after reconciliation's last
 * step (by default 24 h after its last event), so it has all but always left a 24-hour window
 * by then, and that count stayed 0 while the stuck list listed them.
 */
export interface StuckNow {
  count: number;
  more: boolean;
}

export function stuckNow(page: MessagePage): StuckNow {
  return { count: page.data.length, more: page.next_cursor !== null };
}

/** "3", "100+" when there are more than one page holds, "—" before the list came. */
export function formatStuck(stuck: StuckNow | undefined): string {
  if (!stuck) return NONE;
  return `${formatCount(stuck.count)}${stuck.more ? '+' : ''}`;
}

export const STUCK_HINT = 'Reconciliation gave up on these; not limited to the window.';

export function overviewFigures(stats: Stats, stuck: StuckNow | undefined): Figure[] {
  return [
    { key: 'delivery-rate', label: 'Delivery rate', value: formatShare(stats.delivery_rate) },
    { key: 'total', label: 'Messages', value: formatCount(stats.total) },
    {
      key: 'final-within-10s',
      label: 'Final within 10 s',
      value: formatShare(stats.final_within_10s),
    },
    { key: 'latency-p50', label: 'Latency p50', value: formatDuration(stats.latency_ms.p50) },
    { key: 'latency-p95', label: 'Latency p95', value: formatDuration(stats.latency_ms.p95) },
    { key: 'latency-p99', label: 'Latency p99', value: formatDuration(stats.latency_ms.p99) },
    { key: 'stuck', label: 'Stuck', value: formatStuck(stuck), hint: STUCK_HINT },
    { key: 'conflicts', label: 'Conflicts', value: formatCount(stats.conflicts) },
  ];
}

/** One line for screen readers: the figures in short (said once, when the page opens). */
export function announcement(stats: Stats): string {
  return `${formatCount(stats.total)} messages, delivery rate ${formatShare(stats.delivery_rate)}.`;
}

/** The figures a screen reader was last told about (or, for counts, the lowest seen since). */
export interface Told {
  deliveryRate: number | null;
  /** Stuck now (StuckNow's count); null while the stuck list has not come yet. */
  stuck: number | null;
  conflicts: number;
}

/** A delivery rate that moved less than a percentage point is not news. */
const moved = (rate: number, before: number): boolean =>
  // In tenths of a point, as the page shows it: 95.0 % to 94.0 % is a point, floats aside.
  Math.round(Math.abs(rate - before) * 1000) >= 10;

/**
 * What is worth saying to a screen reader about new figures, against what it was told last:
 * the summary the first time, then only a delivery rate that moved by a percentage point or
 * more, and new stuck messages or conflicts; null when nothing is. The counts themselves
 * change with every message on a busy service: said each time, they were read out every few
 * seconds over whatever the reader was doing.
 */
export function statsNews(
  told: Told | undefined,
  stats: Stats,
  stuck: StuckNow | undefined,
): string | null {
  if (!told) return announcement(stats);
  const news: string[] = [];
  const rate = stats.delivery_rate;
  if (rate !== null && (told.deliveryRate === null || moved(rate, told.deliveryRate))) {
    const way = told.deliveryRate === null ? 'now' : rate > told.deliveryRate ? 'up to' : 'down to';
    news.push(`Delivery rate ${way} ${formatShare(rate)}`);
  }
  const more = (now: number, before: number, one: string, many: string, atLeast = false): void => {
    const added = now - before;
    if (added <= 0) return;
    const how = atLeast ? ' or more' : '';
    news.push(`${formatCount(added)}${how} new ${added === 1 && !atLeast ? one : many}`);
  };
  // Stuck now, from the stuck list: a page that came full counts at least that many.
  if (stuck && told.stuck !== null) {
    more(stuck.count, told.stuck, 'stuck message', 'stuck messages', stuck.more);
  }
  more(stats.conflicts, told.conflicts, 'conflict', 'conflicts');
  return news.length > 0 ? `${news.join('; ')}.` : null;
}

/**
 * What the reader is told after new figures: all of them when said, else only lower counts.
 * `stuck` undefined: the stuck list has not answered yet, the count told stays as it was.
 */
export function toldAfter(
  told: Told | undefined,
  stats: Stats,
  stuck: StuckNow | undefined,
  said: boolean,
): Told {
  const stuckNow = stuck?.count ?? null;
  if (said || !told) {
    return {
      deliveryRate: stats.delivery_rate,
      stuck: stuckNow ?? told?.stuck ?? null,
      conflicts: stats.conflicts,
    };
  }
  // A count that fell (a stuck message resolved, a conflict's message left the 24 hours) is the
  // new base: one that rises again from there is news. A stuck count first known now is the
  // base too. The rate stays the one said, so a slow drift adds up.
  return {
    deliveryRate: told.deliveryRate,
    stuck:
      stuckNow === null
        ? told.stuck
        : told.stuck === null
          ? stuckNow
          : Math.min(told.stuck, stuckNow),
    conflicts: Math.min(told.conflicts, stats.conflicts),
  };
}

/** "Updated 09:04:38 UTC", or, once the figures are out of date, "Not updated since …". */
export function updatedText(at: number, stale: boolean): string {
  const time = `${new Date(at).toISOString().slice(11, 19)} UTC`;
  return stale ? `Not updated since ${time}` : `Updated ${time}`;
}

const rank = (status: string): number =>
  Object.hasOwn(STATUS_RANK, status) ? STATUS_RANK[status as CanonicalStatus] : -1;

/** Statuses with messages, in the order a message moves through them; the outcomes always. */
export function statusRows(stats: Stats): Array<{ status: string; count: number }> {
  const always = new Set(['delivered', 'undelivered', 'failed']);
  return Object.entries(stats.by_status)
    .filter(([status, count]) => count > 0 || always.has(status))
    .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b))
    .map(([status, count]) => ({ status, count }));
}

export interface ErrorRow {
  api: string;
  code: string;
  reason: string;
  count: number;
  /** Of all the messages in the window. */
  share: string;
}

export function errorRows(stats: Stats): ErrorRow[] {
  return stats.by_error.map((row) => ({
    api: row.api,
    code: row.error_code,
    reason: row.error_reason ?? 'unknown code',
    count: row.count,
    share: stats.total > 0 ? formatShare(row.count / stats.total) : NONE,
  }));
}

export interface Throughput {
  /** Bucket starts, Unix seconds (uPlot's x axis). */
  times: number[];
  total: number[];
  delivered: number[];
  /** undelivered + failed. */
  failed: number[];
  summary: string;
}

export function throughput(stats: Stats): Throughput {
  const series = stats.series ?? [];
  const total = series.map((point) => point.total);
  const sum = total.reduce((a, b) => a + b, 0);
  const failedSum = series.reduce((a, p) => a + p.undelivered + p.failed, 0);
  return {
    times: series.map((point) => Date.parse(point.start) / 1000),
    total,
    delivered: series.map((point) => point.delivered),
    failed: series.map((point) => point.undelivered + point.failed),
    summary:
      `${formatCount(sum)} messages in the last hour, ${formatCount(failedSum)} not delivered; ` +
      `busiest minute ${formatCount(Math.max(0, ...total))}.`,
  };
}

/**
 * A message's error for a table cell or a fact: its code with SignalWire's reason for it,
 * else its error_message alone. A callback may carry an error_message without an error_code
 * (SignalWire: "some messages may have an error_message without an error_code"); that text is
 * then the only explanation there is, and showing the code only hid it ("—"). null: neither.
 */
export function errorSummary(
  m: Pick<Message, 'error_code' | 'error_reason' | 'error_message'>,
): string | null {
  if (m.error_code) return `${m.error_code} ${m.error_reason ?? ''}`.trim();
  return m.error_message || null;
}

export interface TimelineEntry {
  seq: number;
  time: string;
  status: string;
  /** The provider's own word, when it differs from the canonical status. */
  raw: string | null;
  source: string;
  error: string | null;
  /** A final status that disagrees with another final status of the message. */
  conflicting: boolean;
  /** Arrived after a higher-ranked status: it did not move the message back. */
  late: boolean;
}

/** A message's history, in arrival order, with conflicts and late arrivals marked. */
export function timeline(message: Message): TimelineEntry[] {
  const history: HistoryEntry[] = message.history ?? [];
  const finals = new Set(
    history.filter((e) => rank(e.status) === TERMINAL_RANK).map((e) => e.status),
  );
  let highest = -1;
  return history.map((entry) => {
    const entryRank = rank(entry.status);
    const late = entryRank < highest;
    highest = Math.max(highest, entryRank);
    return {
      seq: entry.seq,
      time: formatTime(entry.received_at),
      status: entry.status,
      raw: entry.raw_status.toLowerCase() === entry.status ? null : entry.raw_status,
      source: entry.source,
      // The code and reason with the message after them; without a code the message alone.
      error:
        entry.error_code && entry.error_message
          ? `${errorSummary(entry)} — ${entry.error_message}`
          : errorSummary(entry),
      conflicting: finals.size > 1 && entryRank === TERMINAL_RANK,
      late,
    };
  });
}

/** The minute-aligned windows the page asks for, so that ETags match within a minute. */
export function windows(now: number): {
  day: Record<string, string>;
  hour: Record<string, string>;
} {
  const minute = 60_000;
  const until = Math.floor(now / minute) * minute + minute;
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    day: { created_since: iso(until - 24 * 60 * minute), created_until: iso(until) },
    hour: {
      created_since: iso(until - 60 * minute),
      created_until: iso(until),
      bucket: 'minute',
    },
  };
}

/**
 * What went wrong, in a few words, from the status the service answered with; undefined is no
 * answer at all (the request failed on the network). 502 and 504 come from a proxy in front
 * that could not reach the service: for the reader, the same as no answer.
 */
export function troubleText(status: number | undefined): string {
  if (status === undefined || status === 502 || status === 504) return 'Connection lost';
  // The read gate full, a read past its statement timeout, or the database unreachable: the
  // service says which only in its message, which is written for API clients ("retry later").
  if (status === 503) return 'Service busy or database unavailable';
  if (status === 429) return 'Too many requests';
  return `Service error (HTTP ${status})`;
}

/** " in 3 s" for a wait of 2.1 s; nothing once the time has come. */
const within = (ms: number): string => (ms > 0 ? ` in ${Math.ceil(ms / 1000)} s` : '');

/** The live state while the page tries again: why, and when it asks next. */
export function retryingText(status: number | undefined, inMs: number): string {
  return `${troubleText(status)}, retrying${within(inMs)}…`;
}

/**
 * A short line for screen readers about a message the lookup shows: its state the first time
 * (`known` undefined), then only the events not shown before; null when there are none. The
 * whole history is in the panel; said again on every event, it was read out from the top.
 */
export function lookupNews(message: Message, known?: ReadonlySet<number>): string | null {
  const history = message.history ?? [];
  if (!known) {
    const events = `${history.length} ${history.length === 1 ? 'event' : 'events'}`;
    return `${message.id}: ${message.status}, ${events} in its history.`;
  }
  const added = history.filter((entry) => !known.has(entry.seq));
  if (added.length === 0) return null;
  const said = added.map((entry) => `${entry.status} via ${entry.source}`).join(', ');
  return `${message.id}: new ${added.length === 1 ? 'event' : 'events'}, ${said}.`;
}

/** The lookup panel while a lookup waits to be asked again (a 503 or 429). */
export function lookupRetryingText(status: number | undefined, inMs: number): string {
  return `${troubleText(status)}, retrying the lookup${within(inMs)}…`;
}

/** The lookup panel once the page stopped asking again. */
export function lookupGaveUpText(id: string, status: number | undefined, tries: number): string {
  const trouble = troubleText(status);
  const lowered = trouble.charAt(0).toLowerCase() + trouble.slice(1);
  return `Could not look up ${id}: ${lowered} after ${tries} tries. Try again later.`;
}

/** `#message=<id>`: a link to one message's lookup. */
export function messageHash(id: string): string {
  return `#message=${encodeURIComponent(id)}`;
}

/** The message id a location hash names, or null (malformed escapes included). */
export function messageFromHash(hash: string): string | null {
  const match = /^#message=([^&]{1,200})$/.exec(hash);
  if (!match) return null;
  try {
    const id = decodeURIComponent(match[1]!).trim();
    return id === '' ? null : id;
  } catch {
    return null;
  }
}

/**
 * Why `token` cannot be an API token, or null. An API token holds no white space, no control
 * character and no character beyond U+00FF (the service refuses such API_TOKENS at start,
 * config.ts): a header carries one byte per character. A token pasted through a chat client
 * or an editor may come with a typographic dash or a zero-width space instead; `fetch` cannot
 * even send it (Headers.set throws), and the page took that for a lost connection, for ever.
 */
export function tokenProblem(token: string): string | null {
  for (const char of token) {
    const code = char.codePointAt(0)!;
    if (code > 0x20 && code !== 0x7f && code <= 0xff && !/\s/u.test(char)) continue;
    const shown = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
    return (
      `This token holds a character no API token can hold (${shown}): an API token has no ` +
      'spaces, no control characters and nothing beyond Latin-1, such as a typographic dash ' +
      'or an invisible space a chat program or editor may have put in. Copy it again from ' +
      'where it is kept and try again.'
    );
  }
  return null;
}
