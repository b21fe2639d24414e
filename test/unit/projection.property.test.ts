import fc from 'fast-check';
import { applyEvent } from '../../src/messages/projection';
import type { MessageState } from '../../src/messages/projection';
import { dedupeKey } from '../../src/messages/status-event';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';

/**
 * SignalWire does not order its callbacks and a spool replay stores events late: whatever order
 * a message's events arrive in, its status, the time of that status, its error code and its
 * conflict flag must come out the same (DESIGN §3). Arrival facts are left out on purpose:
 * `createdAt` (first seen) and `firstTerminalAt` (first final status seen) are defined by it.
 *
 * The events are the ones SignalWire sends: error codes only on `undelivered` and `failed`, and
 * a status that comes with a code every time it comes (the code itself may differ). Outside
 * that, what the fold cannot know from the current state alone makes the order matter (see
 * applyEvent): a `read` arriving before a terminal conflict, an outcome that comes once with a
 * code and once without around another outcome, and — the code being kept, never erased (DESIGN
 * §3) — which of two different codes of outcomes that lost stays on a winner that has none.
 */

const STATUSES = [
  'queued',
  'sending',
  'initiated',
  'sent',
  'delivered',
  'undelivered',
  'failed',
] as const;
const CODES = ['30003', '30005', '30007'] as const;
// Error messages that come without a code (SignalWire: "some messages may have an
// error_message without an error_code").
const NOTES = ['Message rejected by downstream carrier', 'No route to destination'] as const;
const SECOND = 1000;
const base = Date.parse('2026-03-17T22:26:00Z');

const story = fc
  .record({
    api: fc.constantFrom('cxml' as const, 'native' as const),
    // What each failure status comes with in this message's story: a code (with its message),
    // an error message without a code, or neither.
    coded: fc.record({
      undelivered: fc.constantFrom('code', 'message', 'none'),
      failed: fc.constantFrom('code', 'message', 'none'),
    }),
    steps: fc.array(
      fc.record({
        rawStatus: fc.constantFrom(...STATUSES),
        // A few seconds apart at most: equal provider timestamps happen, receive times decide.
        // Now and then one far ahead of its receipt (a provider clock or time zone gone wrong):
        // placed at its receive time instead.
        providerSecond: fc.oneof(
          { weight: 6, arbitrary: fc.integer({ min: 0, max: 6 }) },
          { weight: 1, arbitrary: fc.constantFrom(2 * 3600, 253_402_300_799 - base / SECOND) },
        ),
        code: fc.constantFrom(...CODES),
        note: fc.constantFrom(...NOTES),
        // A reconciliation lookup's answer: what SignalWire said when asked, without the
        // provider's own timestamp of the status.
        lookup: fc.boolean(),
      }),
      { minLength: 1, maxLength: 7 },
    ),
  })
  .map(({ api, coded, steps }) => {
    const events = steps.map((step, index): StatusEvent => {
      const { rawStatus } = step;
      const failing = rawStatus === 'undelivered' || rawStatus === 'failed';
      const brings = failing ? coded[rawStatus] : 'none';
      const code = brings === 'code' ? step.code : null;
      // The compatibility format has no timestamp, nor has a lookup: receive times stand in.
      const timestamped = api === 'native' && !step.lookup;
      return statusEvent(rawStatus, {
        messageId: 'm1',
        api,
        ...(step.lookup && { source: 'reconcile' as const }),
        providerTimestamp: timestamped ? new Date(base + step.providerSecond * SECOND) : null,
        // Within seconds of the provider's times: a lookup can fall before or after them.
        receivedAt: new Date(base + 3 * SECOND + index * SECOND),
        errorCode: code,
        errorMessage: code ? `reason ${code}` : brings === 'message' ? step.note : null,
      });
    });
    // What the write path stores: the first of a dedupe key, never its copies.
    const seen = new Set<string>();
    return events.filter((event) => {
      const key = dedupeKey(event).toString('hex');
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  });

const storyInTwoOrders = story.chain((events) =>
  fc.tuple(
    fc.shuffledSubarray(events, { minLength: events.length, maxLength: events.length }),
    fc.shuffledSubarray(events, { minLength: events.length, maxLength: events.length }),
  ),
);

/**
 * Whether the error a message keeps is decided by its events whatever their order: the winner
 * brings one, or the outcomes that lost bring at most one between them. A code beats an error
 * message without one, so when any event brings a code, only codes count.
 */
function errorIsDecided(events: readonly StatusEvent[], state: MessageState): boolean {
  const coded = events.some((e) => e.errorCode !== null);
  const bearing = events.filter((e) => (coded ? e.errorCode : e.errorMessage) !== null);
  const winnerBrings = bearing.some((e) => e.status === state.status);
  const others = new Set(
    bearing.filter((e) => e.status !== state.status).map((e) => e.errorCode ?? e.errorMessage),
  );
  return winnerBrings || others.size <= 1;
}

const fold = (events: readonly StatusEvent[]): MessageState =>
  events.reduce<MessageState | null>(applyEvent, null)!;

/** What must not depend on arrival order. */
function truth(state: MessageState) {
  return {
    status: state.status,
    rawStatus: state.rawStatus,
    statusRank: state.statusRank,
    statusProviderTimestamp: state.statusProviderTimestamp?.toISOString() ?? null,
    statusReceivedAt: state.statusReceivedAt.toISOString(),
    errorCode: state.errorCode,
    errorMessage: state.errorMessage,
    conflict: state.conflict,
    lastEventAt: state.lastEventAt.toISOString(),
  };
}

test('When a message’s events arrive in any order, then its status, the time of that status, its error code and its conflict flag are the same', () => {
  fc.assert(
    fc.property(storyInTwoOrders, ([one, other]) => {
      const [a, b] = [truth(fold(one)), truth(fold(other))];
      if (!errorIsDecided(one, fold(one))) {
        // Only which of the losers' errors stays may differ — never whether one does.
        expect(a.errorCode === null).toBe(b.errorCode === null);
        expect(a.errorMessage === null).toBe(b.errorMessage === null);
        for (const truth of [a, b]) {
          truth.errorCode = null;
          truth.errorMessage = null;
        }
      }
      expect(a).toEqual(b);
    }),
    { numRuns: 2000 },
  );
});

test('When a status wins, then it holds its latest event’s time and its own error code; without one, a code that came with the story is kept', () => {
  fc.assert(
    fc.property(storyInTwoOrders, ([events]) => {
      const state = fold(events);
      const ofStatus = events.filter((event) => event.status === state.status);
      const latest = ofStatus.reduce((a, b) => (isLater(b, a) ? b : a));
      expect(state.statusReceivedAt).toEqual(latest.receivedAt);
      expect(state.statusProviderTimestamp).toEqual(latest.providerTimestamp);
      // In these stories a status comes with a code every time or never: the winner's own, and
      // without one a code some event brought (never erased, DESIGN §3), if any did.
      if (latest.errorCode !== null) expect(state.errorCode).toBe(latest.errorCode);
      else {
        const codes = events.map((e) => e.errorCode).filter((code) => code !== null);
        if (codes.length === 0) expect(state.errorCode).toBeNull();
        else expect(codes).toContain(state.errorCode);
        // Without any code, an error message that came alone stands in the same way.
        if (codes.length === 0) {
          if (latest.errorMessage !== null) expect(state.errorMessage).toBe(latest.errorMessage);
          else {
            const notes = events.map((e) => e.errorMessage).filter((note) => note !== null);
            if (notes.length === 0) expect(state.errorMessage).toBeNull();
            else expect(notes).toContain(state.errorMessage);
          }
        }
      }
    }),
    { numRuns: 1000 },
  );
});

/**
 * Later provider timestamp (the receive time without one, or for one more than an hour ahead of
 * it), then later receive time (DESIGN §3).
 */
function isLater(a: StatusEvent, b: StatusEvent): boolean {
  const x = orderTime(a);
  const y = orderTime(b);
  return x !== y ? x > y : a.receivedAt > b.receivedAt;
}

function orderTime(event: StatusEvent): number {
  const received = event.receivedAt.getTime();
  const provided = event.providerTimestamp?.getTime() ?? received;
  return provided > received + 3600 * SECOND ? received : provided;
}

test('When events of different statuses tie on every time (compatibility callbacks received in the same millisecond), then the outcome is the same whichever is applied first', () => {
  const receivedAt = new Date(base + 3 * SECOND);
  const tied = fc
    .uniqueArray(fc.constantFrom(...STATUSES), { minLength: 2, maxLength: 4 })
    .map((statuses) =>
      statuses.map((status) =>
        statusEvent(status, {
          messageId: 'm-tie',
          receivedAt,
          errorCode: status === 'undelivered' || status === 'failed' ? '30003' : null,
        }),
      ),
    )
    .chain((events) =>
      fc.tuple(
        fc.shuffledSubarray(events, { minLength: events.length, maxLength: events.length }),
        fc.shuffledSubarray(events, { minLength: events.length, maxLength: events.length }),
      ),
    );
  fc.assert(
    fc.property(tied, ([one, other]) => {
      expect(truth(fold(one))).toEqual(truth(fold(other)));
    }),
    { numRuns: 500 },
  );
  // And which one: a failure outcome over `delivered`, whichever came first.
  const [delivered, undelivered] = [
    statusEvent('delivered', { messageId: 'm-tie', receivedAt }),
    statusEvent('undelivered', { messageId: 'm-tie', receivedAt, errorCode: '30003' }),
  ];
  for (const events of [
    [delivered, undelivered],
    [undelivered, delivered],
  ]) {
    expect(fold(events)).toMatchObject({ status: 'undelivered', conflict: true });
  }
});
