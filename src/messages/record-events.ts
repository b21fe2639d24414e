import type { Db } from '../db/database';
import {
  insertEvents,
  insertNewMessages,
  lockMessages,
  saveMessages,
} from './messages.repository';
import { applyEvent } from './projection';
import type { MessageState } from './projection';
import { dedupeKey } from './status-event';
import type { StatusEvent } from './status-event';

export type RecordOutcome = 'recorded' | 'duplicate';

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

  const inserted = await withRetry(() =>
    db.transaction().execute(async (trx) => {
      const newKeys = await insertEvents(trx, candidates);
      const newEvents = candidates
        .filter(({ key }) => newKeys.has(key.toString('hex')))
        .map(({ event }) => event);
      await project(trx, newEvents);
      return newKeys;
    }),
  );

  return keyed.map(({ key }, index) => {
    const hex = key.toString('hex');
    return firstOfKey.get(hex) === index && inserted.has(hex) ? 'recorded' : 'duplicate';
  });
}

/** Applies new events to their messages; the caller's transaction holds the row locks. */
async function project(trx: Db, events: readonly StatusEvent[]): Promise<void> {
  if (events.length === 0) return;
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
  const changed: MessageState[] = [];
  for (const state of initial.filter((s) => created.has(s.id))) {
    const rest = byMessage.get(state.id)!.slice(1);
    if (rest.length > 0) changed.push(rest.reduce(applyEvent, state));
  }
  for (const state of existing) {
    changed.push(byMessage.get(state.id)!.reduce(applyEvent, state));
  }
  await saveMessages(trx, changed);
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
