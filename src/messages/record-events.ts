import type { Db } from '../db/database';
import { recordBatch, saveFold } from './record-events.repository';
import type { BatchEvent } from './record-events.repository';
import { applyEvent, sameState } from './projection';
import type { MessageState } from './projection';
import { rollupSums } from './rollup';
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
  /**
   * Told, after the commit, that the batch stored new events (the change feed wakes its
   * long-polls and hints other replicas; src/feed/feed-signal.ts).
   */
  onCommitted?: () => void;
}

/**
 * Records a batch of events — history rows plus the message projection — in ONE transaction,
 * so callers choose their batching (one request, or a group commit of many). Returns, per
 * event and in order, whether it was new or a duplicate.
 *
 * Concurrency: new history rows are de-duplicated by the unique dedupe key; message rows are
 * created with INSERT … ON CONFLICT DO NOTHING or locked (in id order) before the projection
 * is computed, so concurrent batches for the same message serialise instead of overwriting
 * each other. A deadlock between two batches is retried.
 */
export async function recordEvents(
  db: Db,
  events: readonly StatusEvent[],
  options: RecordOptions = {},
): Promise<RecordOutcome[]> {
  if (events.length === 0) return [];
  const keyed = events.map((event) => ({ event, key: dedupeKey(event).toString('hex') }));

  // Within one batch the first of a key is the candidate; later copies are duplicates.
  const firstOfKey = new Map<string, number>();
  keyed.forEach(({ key }, index) => {
    if (!firstOfKey.has(key)) firstOfKey.set(key, index);
  });
  const candidates = keyed.filter(({ key }, index) => firstOfKey.get(key) === index);

  const { newKeys, transitions } = await withRetry(() =>
    db.transaction().execute((trx) => record(trx, candidates)),
  );
  // Only after the commit (a retried transaction must not count twice), and an observer's
  // failure must never turn a committed write into an error.
  try {
    if (options.onTransition) transitions.forEach(options.onTransition);
    if (options.onCommitted && newKeys.size > 0) options.onCommitted();
  } catch {
    // observers are best-effort
  }

  return keyed.map(({ key }, index) =>
    firstOfKey.get(key) === index && newKeys.has(key) ? 'recorded' : 'duplicate',
  );
}

/**
 * Inserts the new events and applies them to their messages, inside the caller's
 * transaction. Returns the keys of the new events and the status changes they made.
 */
async function record(
  trx: Db,
  candidates: ReadonlyArray<{ event: StatusEvent; key: string }>,
): Promise<{ newKeys: Set<string>; transitions: StatusTransition[] }> {
  // A message without a row is created from its first event in the batch. Each event goes in
  // with the status its message would have after it were the message new: exact for new
  // messages, corrected below for the others when the stored state decides otherwise.
  const initial = new Map<string, MessageState>();
  const ifNew = new Map<string, MessageState>();
  const batch: BatchEvent[] = candidates.map(({ event, key }) => {
    const state = applyEvent(ifNew.get(event.messageId) ?? null, event);
    ifNew.set(event.messageId, state);
    if (!initial.has(event.messageId)) initial.set(event.messageId, state);
    return { event, key, messageStatus: state.status };
  });
  const { newKeys, created, existing } = await recordBatch(trx, batch, [...initial.values()]);

  const newEvents = new Map<string, BatchEvent[]>();
  for (const candidate of batch) {
    if (!newKeys.has(candidate.key)) continue;
    const list = newEvents.get(candidate.event.messageId) ?? [];
    list.push(candidate);
    newEvents.set(candidate.event.messageId, list);
  }

  // Every new event is folded into its message in arrival order. A message just created from
  // its first event gets that event again, which changes nothing: applying an event a state
  // already holds is a no-op (test/unit/projection.test.ts).
  const transitions: StatusTransition[] = [];
  const changed: MessageState[] = [];
  const corrections: BatchEvent[] = [];
  const deltas = rollupSums();
  for (const [id, events] of newEvents) {
    const stored = created.has(id) ? initial.get(id) : existing.get(id);
    if (!stored) throw foldedOutOfOrder(id);
    const next = events.reduce((previous, candidate) => {
      const folded = applyEvent(previous, candidate.event);
      const transition = transitionBetween(previous, folded);
      if (transition) transitions.push(transition);
      if (folded.status !== candidate.messageStatus) {
        corrections.push({ ...candidate, messageStatus: folded.status });
      }
      return folded;
    }, stored);
    if (!sameState(next, stored)) {
      changed.push(next);
      deltas.move(stored, next);
    }
  }
  await saveFold(trx, { states: changed, corrections, deltas: deltas.nonZero() });
  return { newKeys, transitions };
}

/**
 * A transaction with a higher id applied events to this message first (RECORD_BATCH left its
 * row out): folding now would put this batch's events after that one's in the message's fold
 * but before them in the change feed. A retry runs under a new, higher transaction id.
 */
function foldedOutOfOrder(id: string): Error {
  return Object.assign(
    new Error(`message ${id} was just changed by a later transaction; retrying the batch`),
    { code: RETRY_IN_A_NEW_TRANSACTION },
  );
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

// Deadlock, serialization failure: PostgreSQL's. The third is this module's (foldedOutOfOrder).
const RETRY_IN_A_NEW_TRANSACTION = 'sw_status_fold_order';
const RETRYABLE_SQLSTATES = new Set(['40P01', '40001', RETRY_IN_A_NEW_TRANSACTION]);

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
