import type { Db } from '../db/database';
import { recordBatch, saveMessages } from './record-events.repository';
import { applyEvent, sameState } from './projection';
import { enqueueRelays, relayJobsFor } from './relay-outbox';
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
  /** Told, after the commit, how many relay jobs the batch wrote (wakes the relay worker). */
  onRelaysEnqueued?: (count: number) => void;
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

  const { newKeys, transitions, relays } = await withRetry(() =>
    db.transaction().execute((trx) => record(trx, candidates)),
  );
  if (relays > 0) options.onRelaysEnqueued?.(relays);
  if (options.onTransition) {
    // Only after the commit (a retried transaction must not count twice), and an observer's
    // failure must never turn a committed write into an error.
    try {
      transitions.forEach(options.onTransition);
    } catch {
      // metrics are best-effort
    }
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
): Promise<{ newKeys: Set<string>; transitions: StatusTransition[]; relays: number }> {
  // A message without a row is created from its first event in the batch.
  const initial = new Map<string, MessageState>();
  for (const { event } of candidates) {
    if (!initial.has(event.messageId)) initial.set(event.messageId, applyEvent(null, event));
  }
  const { newKeys, created, existing } = await recordBatch(trx, candidates, [...initial.values()]);

  const newEvents = new Map<string, StatusEvent[]>();
  for (const { event, key } of candidates) {
    if (!newKeys.has(key)) continue;
    const list = newEvents.get(event.messageId) ?? [];
    list.push(event);
    newEvents.set(event.messageId, list);
  }

  // Every new event is folded into its message in arrival order. A message just created from
  // its first event gets that event again, which changes nothing: applying an event a state
  // already holds is a no-op (test/unit/projection.test.ts).
  const transitions: StatusTransition[] = [];
  const changed: MessageState[] = [];
  const folded = new Map<string, MessageState>();
  for (const [id, events] of newEvents) {
    const stored = created.has(id) ? initial.get(id) : existing.get(id);
    if (!stored) throw new Error(`message ${id} has new events but no row`);
    const next = events.reduce((previous, event) => {
      const folded = applyEvent(previous, event);
      const transition = transitionBetween(previous, folded);
      if (transition) transitions.push(transition);
      return folded;
    }, stored);
    if (!sameState(next, stored)) changed.push(next);
    folded.set(id, next);
  }
  await saveMessages(trx, changed);
  // The relay outbox (DESIGN §10): a separate statement, only when a message has a client callback.
  const relays = relayJobsFor(
    candidates.filter(({ key }) => newKeys.has(key)),
    folded,
  );
  await enqueueRelays(trx, relays);
  return { newKeys, transitions, relays: relays.length };
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
