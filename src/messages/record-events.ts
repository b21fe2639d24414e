import type { Db } from '../db/database';
import { insertEvents, insertNewMessages, lockMessages, saveMessages } from './messages.repository';
import { applyEvent } from './projection';
import type { MessageState } from './projection';
import { dedupeKey } from './status-event';
import type { StatusEvent } from './status-event';
import type { Api } from './statuses';

export type RecordOutcome = 'recorded' | 'duplicate';

/** A message's current status changed (queued→sent, sent→delivered, …). */
export interface StatusTransition {
  api: Api;
  from: string;
  to: string;
  /**
   * Between the two statuses' provider timestamps when both events carry one, otherwise
   * between their receive times: never across two different clocks.
   */
  seconds: number;
}

export interface RecordOptions {
  /** Told, after the commit, about every status change the batch caused (metrics). */
  onTransition?: (transition: StatusTransition) => void;
}

/**
 * Records a batch of events — history rows plus the message projection — in ONE transaction,
 * so callers choose their batching (one request, or a group commit of many). Returns, per
 * event and in order, whether it was new or a duplicate.
 *
 * Concurrency: new history rows are de-duplicated by the unique dedupe key; message rows are
 * created with INSERT … ON CONFLICT DO NOTHING and then locked (in id order) before the
 * projection is computed, so concurrent batches for the same message serialise instead of
 * overwriting each other. A deadlock between two batches is retried.
 */
export async function recordEvents(
  db: Db,
  events: readonly StatusEvent[],
  options: RecordOptions = {},
): Promise<RecordOutcome[]> {
  if (events.length === 0) return [];
  const keyed = events.map((event) => ({ event, key: dedupeKey(event) }));

  // Within one batch the first of a key is the candidate; later copies are duplicates.
  const firstOfKey = new Map<string, number>();
  keyed.forEach(({ key }, index) => {
    const hex = key.toString('hex');
    if (!firstOfKey.has(hex)) firstOfKey.set(hex, index);
  });
  const candidates = keyed.filter(({ key }, i) => firstOfKey.get(key.toString('hex')) === i);

  const { newKeys: inserted, transitions } = await withRetry(() =>
    db.transaction().execute(async (trx) => {
      const newKeys = await insertEvents(trx, candidates);
      const newEvents = candidates
        .filter(({ key }) => newKeys.has(key.toString('hex')))
        .map(({ event }) => event);
      return { newKeys, transitions: await project(trx, newEvents) };
    }),
  );
  if (options.onTransition) {
    // Only after the commit (a retried transaction must not count twice), and an observer's
    // failure must never turn a committed write into an error.
    try {
      transitions.forEach(options.onTransition);
    } catch {
      // metrics are best-effort
    }
  }

  return keyed.map(({ key }, index) => {
    const hex = key.toString('hex');
    return firstOfKey.get(hex) === index && inserted.has(hex) ? 'recorded' : 'duplicate';
  });
}

/**
 * Applies new events to their messages; the caller's transaction holds the row locks.
 * Returns the status changes it made.
 */
async function project(trx: Db, events: readonly StatusEvent[]): Promise<StatusTransition[]> {
  if (events.length === 0) return [];
  const byMessage = new Map<string, StatusEvent[]>();
  for (const event of events) {
    const list = byMessage.get(event.messageId) ?? [];
    list.push(event);
    byMessage.set(event.messageId, list);
  }
  const ids = [...byMessage.keys()].sort();

  // A message seen for the first time is created from its first event...
  const initial = ids.map((id) => applyEvent(null, byMessage.get(id)![0]!));
  const created = await insertNewMessages(trx, initial);
  const existing = await lockMessages(
    trx,
    ids.filter((id) => !created.has(id)),
  );

  // ...and then every remaining event is folded in, in arrival order.
  const transitions: StatusTransition[] = [];
  const fold = (state: MessageState, rest: readonly StatusEvent[]): MessageState =>
    rest.reduce((previous, event) => {
      const next = applyEvent(previous, event);
      const transition = transitionBetween(previous, next);
      if (transition) transitions.push(transition);
      return next;
    }, state);
  const changed: MessageState[] = [];
  for (const state of initial.filter((s) => created.has(s.id))) {
    const rest = byMessage.get(state.id)!.slice(1);
    if (rest.length > 0) changed.push(fold(state, rest));
  }
  for (const state of existing) {
    changed.push(fold(state, byMessage.get(state.id)!));
  }
  await saveMessages(trx, changed);
  return transitions;
}

function transitionBetween(previous: MessageState, next: MessageState): StatusTransition | null {
  if (next.status === previous.status) return null;
  const a = previous.statusProviderTimestamp;
  const b = next.statusProviderTimestamp;
  const ms =
    a && b
      ? b.getTime() - a.getTime()
      : next.statusReceivedAt.getTime() - previous.statusReceivedAt.getTime();
  // A negative span means the clocks disagree (or a terminal conflict resolved backwards):
  // it says nothing about delivery time.
  if (ms < 0) return null;
  return { api: next.api, from: previous.status, to: next.status, seconds: ms / 1000 };
}

const RETRYABLE_SQLSTATES = new Set(['40P01', '40001']); // deadlock, serialization failure

async function withRetry<T>(work: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (attempt >= attempts || typeof code !== 'string' || !RETRYABLE_SQLSTATES.has(code)) {
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
    }
  }
}
