import type { Db } from '../db/database';
import { recordBatch, saveFold, withTwoOutcomes } from './record-events.repository';
import type { BatchEvent } from './record-events.repository';
import { applyEvent, plausibleProviderTime, sameState } from './projection';
import { mayRepeatLookup, repeatsOfLookups } from './lookup-repeats';
import { forgetEventTexts, holdsText } from './redaction';
import type { MessageState } from './projection';
import { enqueueRelays, relayJobsFor } from './relay-outbox';
import { rollupSums } from './rollup';
import { dropSendIntents, sendIntentsFor } from './send-intents';
import { dedupeKey } from './status-event';
import type { StatusEvent } from './status-event';
import { TERMINAL_RANK, rankOf } from './statuses';
import type { Api } from './statuses';

/**
 * Per event: stored, a duplicate of a stored event, or refused because its callback token
 * does not belong to the message's send (DESIGN §2 "A token authenticates its own send only"),
 * or because it names another project than its message's (`refused_project`: refusedProjects),
 * or, with `existingOnly`, not stored because its message has no row (`message_gone`), or,
 * with `stillNews`, not stored because its message already says what it tells (`not_news`).
 */
export type RecordOutcome =
  'recorded' | 'duplicate' | 'refused_token' | 'refused_project' | 'message_gone' | 'not_news';

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
  /**
   * Only events of messages that have a row are stored; the others are `message_gone`. A
   * lookup's answer (src/reconcile) is about a message the sweep found: if retention removed it
   * meanwhile, even while the write waited on its row, the answer alone must not create it anew.
   */
  existingOnly?: boolean;
  /**
   * An event is stored only when this holds against its message's row as the write holds it
   * locked — not as read before the write, which a callback committed in between would make
   * stale; otherwise it is `not_news`. A lookup's answer (src/reconcile) is news only against
   * the message as it is then: a native callback saying the same has a provider timestamp the
   * answer lacks, so dedupe would store both and the app would be relayed the status twice.
   * Not asked for a message the batch creates.
   */
  stillNews?: (event: StatusEvent, stored: MessageState) => boolean;
  /** Told, after the commit, about every status change the batch caused (metrics). */
  onTransition?: (transition: StatusTransition) => void;
  /** Told, after the commit, how many relay jobs the batch wrote (wakes the relay worker). */
  onRelaysEnqueued?: (count: number) => void;
  /**
   * Told, after the commit, that the batch stored new events (the change feed wakes its
   * long-polls and hints other replicas; src/feed/feed-signal.ts).
   */
  onCommitted?: () => void;
}

/**
 * Records a batch of events — history rows plus the message projection — in ONE transaction,
 * so callers choose their batching (one request, or a group commit of many). Returns, per
 * event and in order, whether it was new, a duplicate, or refused for its token.
 *
 * Concurrency: new history rows are de-duplicated by the unique dedupe key; message rows are
 * created with INSERT … ON CONFLICT DO NOTHING or locked (in id order) before the projection
 * is computed, so concurrent batches for the same message serialise instead of overwriting
 * each other. A deadlock between two batches is retried.
 *
 * Token binding is checked here, against the rows the batch holds locked, so the check and
 * the binding are atomic with the write whoever calls: one request, a group commit, its
 * one-by-one fallback or a spool replay. When an event is refused the transaction is rolled
 * back and the batch recorded again without it: the rare path pays, the common one costs no
 * extra statement.
 */
export async function recordEvents(
  db: Db,
  events: readonly StatusEvent[],
  options: RecordOptions = {},
): Promise<RecordOutcome[]> {
  if (events.length === 0) return [];
  const keyed = events.map((event, index) => ({
    event,
    key: dedupeKey(event).toString('hex'),
    index,
  }));
  // Events a rolled-back attempt left out of the batch, with their answer.
  const leftOut = new Map<number, RecordOutcome>();

  for (;;) {
    const active = leftOut.size === 0 ? keyed : keyed.filter(({ index }) => !leftOut.has(index));
    if (active.length === 0) return keyed.map(({ index }) => leftOut.get(index)!);
    // Within one batch the first of a key is the candidate; later copies are duplicates.
    const firstOfKey = new Map<string, number>();
    for (const { key, index } of active) if (!firstOfKey.has(key)) firstOfKey.set(key, index);
    const candidates = active.filter(({ key, index }) => firstOfKey.get(key) === index);

    let result: { newKeys: Set<string>; transitions: StatusTransition[]; relays: number };
    try {
      result = await withRetry(() =>
        db.transaction().execute((trx) => record(trx, active, candidates, options)),
      );
    } catch (error) {
      if (!(error instanceof LeftOut)) throw error;
      for (const index of error.indices) leftOut.set(index, error.outcome);
      continue;
    }

    const { newKeys, transitions, relays } = result;
    // Only after the commit (a retried transaction must not count twice), and an observer's
    // failure must never turn a committed write into an error.
    try {
      if (relays > 0) options.onRelaysEnqueued?.(relays);
      if (options.onTransition) transitions.forEach(options.onTransition);
      if (options.onCommitted && newKeys.size > 0) options.onCommitted();
    } catch {
      // observers are best-effort
    }
    return keyed.map(({ key, index }) => {
      const left = leftOut.get(index);
      if (left !== undefined) return left;
      return firstOfKey.get(key) === index && newKeys.has(key) ? 'recorded' : 'duplicate';
    });
  }
}

interface KeyedEvent {
  event: StatusEvent;
  key: string;
  /** Position in the caller's batch. */
  index: number;
}

/**
 * Events the batch must leave out, with their answer: their token does not belong to their
 * message's send (`refused_token`), or, with `existingOnly`, their message has no row
 * (`message_gone`), or, with `stillNews`, their message already says it (`not_news`). The
 * transaction rolls back and the batch is recorded again without them.
 */
class LeftOut extends Error {
  constructor(
    readonly outcome: RecordOutcome,
    readonly indices: readonly number[],
  ) {
    super(`events left out of the batch: ${outcome}`);
  }
}

/**
 * Inserts the new events and applies them to their messages, inside the caller's
 * transaction. Returns the keys of the new events and the status changes they made.
 * `active` is the whole batch in arrival order (copies included: each copy's token is
 * checked too), `candidates` the first event of each dedupe key.
 */
async function record(
  trx: Db,
  active: readonly KeyedEvent[],
  candidates: readonly KeyedEvent[],
  { existingOnly, stillNews }: Pick<RecordOptions, 'existingOnly' | 'stillNews'>,
): Promise<{ newKeys: Set<string>; transitions: StatusTransition[]; relays: number }> {
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
  const tokenMessages = new Set<string>();
  for (const { event } of active) {
    if (event.tokenRef !== undefined) tokenMessages.add(event.messageId);
  }
  const { newKeys, created, existing } = await recordBatch(
    trx,
    batch,
    [...initial.values()],
    [...tokenMessages],
  );
  if (existingOnly && created.size > 0) {
    throw new LeftOut(
      'message_gone',
      active.filter(({ event }) => created.has(event.messageId)).map(({ index }) => index),
    );
  }
  if (stillNews) {
    const stale = active.filter(({ event }) => {
      const stored = existing.get(event.messageId);
      return stored !== undefined && !stillNews(event, stored);
    });
    if (stale.length > 0)
      throw new LeftOut(
        'not_news',
        stale.map(({ index }) => index),
      );
  }
  const otherProject = refusedProjects(active, newKeys, created, initial, existing);
  if (otherProject.length > 0) throw new LeftOut('refused_project', otherProject);
  if (tokenMessages.size > 0) {
    // A token's message left out of RECORD_BATCH's answer was just changed by a later
    // transaction: its binding can only be checked in a new one (see foldedOutOfOrder).
    for (const id of tokenMessages) {
      if (!created.has(id) && !existing.has(id)) throw foldedOutOfOrder(id);
    }
    const refused = refusedTokens(active, candidates, newKeys, created, existing);
    if (refused.length > 0) throw new LeftOut('refused_token', refused);
  }

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
  const corrections: BatchEvent[] = [];
  const deltas = rollupSums();
  const changed = new Map<string, MessageState>();
  const folded = new Map<string, MessageState>();
  const mayRepeat: BatchEvent[] = [];
  const foldedFrom: Array<{ stored: MessageState; next: MessageState }> = [];
  for (const [id, events] of newEvents) {
    const stored = created.has(id) ? initial.get(id) : existing.get(id);
    if (!stored) throw foldedOutOfOrder(id);
    const next = events.reduce((previous, candidate) => {
      // A message this transaction created has had no lookup to repeat.
      if (!created.has(id) && mayRepeatLookup(previous, candidate.event)) {
        mayRepeat.push(candidate);
      }
      const after = applyEvent(previous, candidate.event);
      const transition = transitionBetween(previous, after);
      if (transition) transitions.push(transition);
      if (after.status !== candidate.messageStatus) {
        corrections.push({ ...candidate, messageStatus: after.status });
      }
      return after;
    }, stored);
    foldedFrom.push({ stored, next });
  }
  const conflicts = await hiddenConflicts(trx, foldedFrom, newEvents);
  for (const { stored, next: folding } of foldedFrom) {
    const next = conflicts.has(folding.id) ? { ...folding, conflict: true } : folding;
    if (!sameState(next, stored)) {
      changed.set(next.id, next);
      deltas.move(stored, next);
    }
    folded.set(next.id, next);
  }
  // The client callback is not part of the rollups: no delta to add.
  for (const state of await withSendIntents(trx, folded, newEvents)) {
    changed.set(state.id, state);
    folded.set(state.id, state);
  }
  // A message redacted at SignalWire keeps no text, whatever a callback arriving since brings
  // (redaction.ts): a separate statement, only for such a message's events that hold one.
  const redacted: string[] = [];
  for (const [id, events] of newEvents) {
    if (folded.get(id)?.body === '' && events.some(holdsText)) redacted.push(id);
  }
  if (redacted.length > 0) await forgetEventTexts(trx, redacted);
  // The relay outbox (DESIGN §10): a separate statement, only when a message has a client
  // callback. Not for a late callback saying what a lookup already relayed (lookup-repeats.ts).
  const repeats = await repeatsOfLookups(trx, mayRepeat, newEvents);
  const relays = relayJobsFor(
    candidates.filter(({ key }) => newKeys.has(key) && !repeats.has(key)),
    folded,
  );
  // The transaction's last statement takes the COMMIT with it (db/kysely-pool.ts): nothing
  // below may throw once it is sent.
  const fold = { states: [...changed.values()], corrections, deltas: deltas.nonZero() };
  if (relays.length === 0) {
    await saveFold(trx, fold, { last: true });
  } else {
    await saveFold(trx, fold, { last: false });
    await enqueueRelays(trx, relays, { last: true });
  }
  return { newKeys, transitions, relays: relays.length };
}

/**
 * The messages a final event of this batch puts in conflict although their fold cannot tell:
 * a message above rank 50 (`read`) no longer shows which outcome it stands on, so a final
 * status arriving then — `read`, then `delivered` and `undelivered` — is checked against the
 * stored history (DESIGN §3: two different final statuses are a conflict, whatever the order
 * they came in). Costs a statement only for such a batch, rare: a message that was read and
 * then hears of an outcome.
 */
async function hiddenConflicts(
  trx: Db,
  folds: ReadonlyArray<{ next: MessageState }>,
  newEvents: ReadonlyMap<string, readonly BatchEvent[]>,
): Promise<Set<string>> {
  const unseen = folds
    .map(({ next }) => next)
    .filter(
      (state) =>
        state.statusRank > TERMINAL_RANK &&
        !state.conflict &&
        newEvents.get(state.id)!.some(({ event }) => rankOf(event.status) === TERMINAL_RANK),
    );
  return withTwoOutcomes(
    trx,
    unseen.map((state) => state.id),
  );
}

/**
 * A callback that beat the proxy's record of its send (send-intents.ts). Its token bound the
 * message to the send's ref, but only the proxy's record brings the caller's own callback URL:
 * for a message bound to a ref, not yet recorded by the proxy, without a client callback and
 * with a new event to relay, the URL the proxy wrote before forwarding the send is taken now,
 * in the event's own transaction, so the event's relay job is written with it. The proxy's own
 * new events delete their sends' intents: the message row holds the URL from then on.
 *
 * Returns the states that took a URL. Costs nothing on the common path: both statements run
 * only for the batches that need them.
 */
async function withSendIntents(
  trx: Db,
  folded: ReadonlyMap<string, MessageState>,
  newEvents: ReadonlyMap<string, readonly BatchEvent[]>,
): Promise<MessageState[]> {
  const waiting: MessageState[] = [];
  const recordedSends: string[] = [];
  for (const [id, events] of newEvents) {
    const state = folded.get(id)!;
    for (const { event } of events) {
      if (event.source === 'proxy' && event.send?.ref && event.send.clientStatusCallback) {
        recordedSends.push(event.send.ref);
      }
    }
    const relayable = events.some(({ event }) => event.relay && event.source !== 'proxy');
    if (relayable && state.ref !== null && !state.sentViaProxy && !state.clientStatusCallback) {
      waiting.push(state);
    }
  }
  const taken: MessageState[] = [];
  if (waiting.length > 0) {
    const urls = await sendIntentsFor(
      trx,
      waiting.map((state) => state.ref!),
    );
    for (const state of waiting) {
      const url = urls.get(state.ref!);
      if (url !== undefined) taken.push({ ...state, clientStatusCallback: url });
    }
  }
  await dropSendIntents(trx, recordedSends);
  return taken;
}

/**
 * A transaction with a higher id applied events to this message first (RECORD_BATCH left its
 * row out): folding now would put this batch's events after that one's in the message's fold
 * but before them in the change feed. A retry runs under a new, higher transaction id.
 */
function foldedOutOfOrder(id: string): Error {
  return Object.assign(
    new Error(`message ${id} was just changed by a later transaction; retrying the batch`),
    { code: SERIALIZATION_FAILURE },
  );
}

/**
 * DESIGN §2 "A token authenticates its own send only", for the batch's events in arrival
 * order against the rows it holds locked: a token-authenticated event is refused for a message
 * bound to another ref, or that exists without a ref (never sent through the proxy); for a
 * message without a row it binds the message to its ref — unless the token is a legacy one,
 * which may only write to a message already bound to it. Returns the refused events' indices.
 */
function refusedTokens(
  active: readonly KeyedEvent[],
  candidates: readonly KeyedEvent[],
  newKeys: ReadonlySet<string>,
  created: ReadonlySet<string>,
  existing: ReadonlyMap<string, MessageState>,
): number[] {
  // Each message's binding as the events meet it: `exists: false` until an accepted event
  // creates it in this batch; `ref: null` for a message not bound to any send.
  const bindings = new Map<string, { exists: boolean; ref: string | null }>();
  for (const [id, row] of existing) bindings.set(id, { exists: true, ref: row.ref });
  for (const id of created) bindings.set(id, { exists: false, ref: null });
  const isNew = new Set(candidates.filter(({ key }) => newKeys.has(key)).map(({ index }) => index));

  const refused: number[] = [];
  for (const { event, index } of active) {
    const binding = bindings.get(event.messageId);
    if (!binding) continue; // no token event of this message, nothing new for it
    const { tokenRef } = event;
    if (tokenRef === undefined) {
      // A signed callback or the proxy's own record: it creates the message (bound when it
      // is the proxy's send) or brings the send's ref to a message without one.
      if (isNew.has(index)) {
        binding.ref ??= event.send?.ref ?? null;
        binding.exists = true;
      }
    } else if (!binding.exists) {
      if (event.tokenLegacy) refused.push(index);
      else Object.assign(binding, { exists: true, ref: tokenRef });
    } else if (binding.ref !== tokenRef) {
      refused.push(index);
    }
  }
  return refused;
}

/**
 * A message belongs to the project SignalWire named when it was first stored (the proxy records
 * the project of SignalWire's answer, and refuses a send whose path names another project than
 * its credentials), and every genuine callback of it names that project. One sw-status may
 * serve several projects, each signing with its own key (README): a new event naming another
 * project is one that project made up about a message that is not its own — stored, it moved
 * the message's status and its project, and then let that project's credentials wipe the
 * message's text. Returns the indices of such events, checked against the rows the batch holds
 * locked (a message created in this batch: against its first event's project).
 */
function refusedProjects(
  active: readonly KeyedEvent[],
  newKeys: ReadonlySet<string>,
  created: ReadonlySet<string>,
  initial: ReadonlyMap<string, MessageState>,
  existing: ReadonlyMap<string, MessageState>,
): number[] {
  const refused: number[] = [];
  for (const { event, key, index } of active) {
    if (event.projectId === null || !newKeys.has(key)) continue;
    const owner = created.has(event.messageId)
      ? initial.get(event.messageId)?.projectId
      : existing.get(event.messageId)?.projectId;
    if (owner != null && owner !== event.projectId) refused.push(index);
  }
  return refused;
}

/**
 * A provider timestamp fit to time a transition by: none far ahead of its receipt (projection.ts)
 * nor more than a day behind it (a zero or epoch stamp would make a span of decades; SignalWire
 * gives up calling back within minutes).
 */
function timingStamp(providerTimestamp: Date | null, receivedAt: Date): Date | null {
  const stamp = plausibleProviderTime(providerTimestamp, receivedAt);
  return stamp && receivedAt.getTime() - stamp.getTime() <= DAY_MS ? stamp : null;
}

const DAY_MS = 86_400_000;

function transitionBetween(previous: MessageState, next: MessageState): StatusTransition | null {
  if (next.status === previous.status) return null;
  const a = timingStamp(previous.statusProviderTimestamp, previous.statusReceivedAt);
  const b = timingStamp(next.statusProviderTimestamp, next.statusReceivedAt);
  const ms =
    a && b
      ? b.getTime() - a.getTime()
      : next.statusReceivedAt.getTime() - previous.statusReceivedAt.getTime();
  // A negative span means the clocks disagree (or a terminal conflict resolved backwards):
  // it says nothing about delivery time.
  if (ms < 0) return null;
  return { api: next.api, from: previous.status, to: next.status, seconds: ms / 1000 };
}

// Deadlock, serialization failure. foldedOutOfOrder raises the latter too: it is one (a later
// transaction got to the message first), and every caller already treats it as transient
// (src/db/write-failure.ts), so a batch that keeps losing the race is never dead-lettered.
const SERIALIZATION_FAILURE = '40001';
const RETRYABLE_SQLSTATES = new Set(['40P01', SERIALIZATION_FAILURE]);

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
