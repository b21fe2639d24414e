import { applyEvent, sameState } from '../../src/messages/projection';
import type { MessageState } from '../../src/messages/projection';
import type { StatusEvent } from '../../src/messages/status-event';
import { canonicalStatus } from '../../src/messages/statuses';
import { statusEvent } from '../factories';

let clock = Date.parse('2026-11-01T10:00:00Z');
// Events of one message, each received a second after the previous one.
function event(rawStatus: string, overrides: Partial<StatusEvent> = {}): StatusEvent {
  clock += 1000;
  return statusEvent(rawStatus, {
    messageId: 'm1',
    api: 'native',
    receivedAt: new Date(clock),
    ...overrides,
  });
}
const fold = (events: StatusEvent[]): MessageState =>
  events.reduce<MessageState | null>(applyEvent, null)!;

describe('canonicalStatus', () => {
  test('When SignalWire says initiated, then the canonical status is sending', () => {
    expect(canonicalStatus('initiated')).toBe('sending');
  });
  test('When a status is new to us, then it is unknown', () => {
    expect(canonicalStatus('teleported')).toBe('unknown');
    expect(canonicalStatus('__proto__')).toBe('unknown');
  });
});

describe('applyEvent', () => {
  test('When delivered arrives before sent, then the status stays delivered', () => {
    const state = fold([event('queued'), event('delivered'), event('sent')]);
    expect(state.status).toBe('delivered');
    expect(state.conflict).toBe(false);
  });

  test('When events arrive in any order, then the final status is the same', () => {
    const events = [
      event('queued'),
      event('initiated'),
      event('sent'),
      event('delivered'),
      event('read'),
    ];
    const orders = [
      events,
      [...events].reverse(),
      [events[3]!, events[0]!, events[4]!, events[1]!, events[2]!],
    ];
    for (const order of orders) expect(fold(order).status).toBe('read');
  });

  test('When two terminal statuses disagree, then the later provider timestamp wins and the message is flagged', () => {
    const delivered = event('delivered', { providerTimestamp: new Date('2026-11-01T10:00:05Z') });
    const undelivered = event('undelivered', {
      providerTimestamp: new Date('2026-11-01T10:00:01Z'),
      errorCode: '30003',
    });
    const state = fold([delivered, undelivered]);
    expect(state.status).toBe('delivered');
    expect(state.conflict).toBe(true);
    // DESIGN §3: a code, once known, is not erased — it stays with the conflict it came with.
    expect(state.errorCode).toBe('30003');
    expect(fold([undelivered, delivered]).status).toBe('delivered');
  });

  test('When a provider timestamp is far ahead of its receipt, then it does not win every later conflict: the event stands at its receive time', () => {
    const receivedAt = new Date('2026-11-01T10:00:02Z');
    const delivered = event('delivered', {
      providerTimestamp: new Date('9999-12-31T23:59:59Z'),
      receivedAt,
    });
    const undelivered = event('undelivered', {
      providerTimestamp: new Date('2026-11-01T10:05:00Z'),
      receivedAt: new Date('2026-11-01T10:05:01Z'),
      errorCode: '30003',
    });
    expect(fold([delivered, undelivered]).status).toBe('undelivered');
    expect(fold([undelivered, delivered]).status).toBe('undelivered');
    // Within the hour a provider clock may run ahead of ours, its timestamp still decides.
    const slightlyAhead = event('delivered', {
      providerTimestamp: new Date('2026-11-01T10:50:00Z'),
      receivedAt,
    });
    expect(fold([slightlyAhead, undelivered]).status).toBe('delivered');
    expect(fold([undelivered, slightlyAhead]).status).toBe('delivered');
  });

  test('When terminal statuses disagree without provider timestamps, then the later receive time wins', () => {
    const state = fold([
      event('delivered', { api: 'cxml' }),
      event('failed', { api: 'cxml', errorCode: '30008' }),
    ]);
    expect(state.status).toBe('failed');
    expect(state.errorCode).toBe('30008');
    expect(state.conflict).toBe(true);
  });

  test('When a later event has no error code, then the known error code is kept', () => {
    const state = fold([
      event('undelivered', { errorCode: '30003', errorMessage: 'unreachable' }),
      event('sent'),
    ]);
    expect(state).toMatchObject({
      status: 'undelivered',
      errorCode: '30003',
      errorMessage: 'unreachable',
    });
  });

  test('When undelivered arrives, then undelivered with 30003, then the message takes the code (DESIGN §3)', () => {
    const plain = event('undelivered');
    const withCode = event('undelivered', { errorCode: '30003', errorMessage: 'unreachable' });
    for (const order of [
      [plain, withCode],
      [withCode, plain],
    ]) {
      expect(fold(order)).toMatchObject({
        status: 'undelivered',
        errorCode: '30003',
        errorMessage: 'unreachable',
      });
    }
  });

  test('When an event of a lower rank brings a code to a message without one, then the message takes it', () => {
    const state = fold([event('failed'), event('sent', { errorCode: '30007' })]);
    expect(state).toMatchObject({ status: 'failed', errorCode: '30007' });
  });

  test('When an event brings a code to a message that has one, then only a winning event or the latest of its status replaces it', () => {
    const first = event('undelivered', { errorCode: '30003' });
    const latest = event('undelivered', { errorCode: '30005' });
    const lower = event('sent', { errorCode: '30008' });
    // The latest word on the current status, whichever of the two arrived first.
    for (const order of [
      [first, latest, lower],
      [latest, first, lower],
      [lower, first, latest],
    ]) {
      expect(fold(order).errorCode).toBe('30005');
    }
    expect(
      fold([event('sent', { errorCode: '30008' }), event('failed', { errorCode: '30004' })])
        .errorCode,
    ).toBe('30004');
  });

  test('When the outcome that loses a terminal conflict brings the only code, then the message keeps it whichever arrives first (DESIGN §3: never erased by an event without one)', () => {
    const undelivered = event('undelivered', {
      providerTimestamp: new Date('2026-03-17T22:26:01Z'),
      errorCode: '30003',
      errorMessage: 'unreachable',
    });
    const delivered = event('delivered', { providerTimestamp: new Date('2026-03-17T22:26:05Z') });
    for (const order of [
      [undelivered, delivered],
      [delivered, undelivered],
    ]) {
      expect(fold(order)).toMatchObject({
        status: 'delivered',
        conflict: true,
        errorCode: '30003',
        errorMessage: 'unreachable',
      });
    }
  });

  test('When the winner of a terminal conflict has a code, then it is its own whatever the losers brought and whatever the order', () => {
    const at = (second: number) => new Date(Date.UTC(2026, 2, 17, 22, 26, second));
    const undelivered = event('undelivered', { providerTimestamp: at(1), errorCode: '30003' });
    const failed = event('failed', { providerTimestamp: at(5), errorCode: '30005' });
    for (const order of [
      [undelivered, failed],
      [failed, undelivered],
    ]) {
      expect(fold(order)).toMatchObject({ status: 'failed', errorCode: '30005', conflict: true });
    }
  });

  test('When a winner without a code meets two losers with different codes, then the message keeps the first code it learned (a limit of a fold over the current state)', () => {
    // DESIGN §3 says a code is never erased and a message without one takes any; which of two
    // losers' codes stays is not said, and the current state cannot tell which came later.
    const at = (second: number) => new Date(Date.UTC(2026, 2, 17, 22, 26, second));
    const delivered = event('delivered', { providerTimestamp: at(9) });
    const undelivered = event('undelivered', { providerTimestamp: at(1), errorCode: '30003' });
    const failed = event('failed', { providerTimestamp: at(5), errorCode: '30005' });
    expect(fold([undelivered, failed, delivered]).errorCode).toBe('30005');
    expect(fold([delivered, undelivered, failed]).errorCode).toBe('30003');
  });

  test('When a status comes twice around a conflicting outcome, then the latest provider timestamp wins whatever the order', () => {
    const at = (second: number) => new Date(Date.UTC(2026, 2, 17, 22, 26, second));
    const delivered01 = event('delivered', { providerTimestamp: at(1) });
    const delivered09 = event('delivered', { providerTimestamp: at(9) });
    const undelivered05 = event('undelivered', { providerTimestamp: at(5), errorCode: '30003' });
    for (const order of [
      [delivered01, delivered09, undelivered05],
      [delivered09, delivered01, undelivered05],
      [delivered01, undelivered05, delivered09],
    ]) {
      expect(fold(order)).toMatchObject({
        status: 'delivered',
        statusProviderTimestamp: at(9),
        statusReceivedAt: delivered09.receivedAt,
        errorCode: '30003',
        conflict: true,
      });
    }
  });

  test('When a reconciliation found the status before its callback was replayed, then the callback’s provider timestamp still decides against a rival', () => {
    const at = (second: number) => new Date(Date.parse('2026-11-01T00:00:00Z') + second * 1000);
    // delivered at provider time +20 s, received at +60 s (spooled, replayed late)
    const callback = statusEvent('delivered', {
      messageId: 'm-r',
      api: 'native',
      providerTimestamp: at(20),
      receivedAt: at(60),
    });
    // the same status found by a lookup: no provider timestamp
    const lookup = statusEvent('delivered', {
      messageId: 'm-r',
      api: 'native',
      source: 'reconcile',
      providerTimestamp: null,
      receivedAt: at(61),
    });
    // an outcome the provider dated earlier (+10 s), received last
    const rival = statusEvent('undelivered', {
      messageId: 'm-r',
      api: 'native',
      providerTimestamp: at(10),
      receivedAt: at(62),
      errorCode: '30003',
    });
    for (const order of [
      [callback, lookup, rival],
      [lookup, callback, rival],
    ]) {
      expect(fold(order)).toMatchObject({ status: 'delivered', errorCode: '30003' });
    }
  });

  test('When a status is unknown, then it never outranks a known one', () => {
    expect(fold([event('sent'), event('teleported')]).status).toBe('sent');
    expect(fold([event('teleported')])).toMatchObject({
      status: 'unknown',
      rawStatus: 'teleported',
      statusRank: 0,
    });
  });

  test('When the proxy records a send after its callbacks, then send facts are kept and the first-seen time does not move', () => {
    const callback = event('delivered');
    const proxy = event('queued', {
      source: 'proxy',
      receivedAt: new Date(callback.receivedAt.getTime() - 5000),
      send: { ref: 'r1', kind: 'sms', clientStatusCallback: 'https://app/cb', body: null },
    });
    const state = fold([callback, proxy]);
    expect(state).toMatchObject({
      status: 'delivered',
      ref: 'r1',
      sentViaProxy: true,
      clientStatusCallback: 'https://app/cb',
    });
    // created_at is when the service first saw the message, so an order=created walk can
    // neither skip nor repeat it and the stats never move it to another minute.
    expect(state.createdAt).toEqual(callback.receivedAt);
    expect(state.lastEventAt).toEqual(callback.receivedAt);
  });

  test('When the proxy says a send is an MMS, then a callback’s NumMedia=0 does not make it an SMS, in either order', () => {
    const callback = () => event('sent', { api: 'cxml', numMedia: 0 });
    const proxy = () =>
      event('queued', {
        api: 'cxml',
        source: 'proxy',
        numMedia: 0,
        send: { ref: 'r1', kind: 'mms', clientStatusCallback: null, body: null },
      });
    expect(fold([callback(), proxy()]).kind).toBe('mms');
    expect(fold([proxy(), callback()]).kind).toBe('mms');
  });

  test('When a message first reaches a final status, then that time is kept whatever follows', () => {
    const sent = event('sent');
    const undelivered = event('undelivered', {
      receivedAt: new Date(sent.receivedAt.getTime() + 4000),
      providerTimestamp: new Date(sent.receivedAt.getTime() + 4000),
    });
    const delivered = event('delivered', {
      receivedAt: new Date(sent.receivedAt.getTime() + 9000),
      providerTimestamp: new Date(sent.receivedAt.getTime() + 9000),
    });
    expect(fold([sent]).firstTerminalAt).toBeNull();
    const state = fold([sent, undelivered, delivered]);
    expect(state.status).toBe('delivered');
    expect(state.conflict).toBe(true);
    expect(state.firstTerminalAt).toEqual(undelivered.receivedAt);
    expect(fold([delivered]).firstTerminalAt).toEqual(delivered.receivedAt);
  });

  // The write path relies on this: a message created from its first event gets that event
  // folded in again (messages/record-events.ts).
  test.each([
    [
      'a proxy send',
      event('queued', {
        source: 'proxy',
        send: { ref: 'r1', kind: 'sms', clientStatusCallback: 'https://app/cb', body: 'hi' },
      }),
    ],
    ['a callback with a token', event('sent', { tokenRef: 'r2', numMedia: 2 })],
    ['a failure', event('undelivered', { errorCode: '30003', errorMessage: 'Unreachable' })],
    [
      'a native receipt',
      event('delivered', { providerTimestamp: new Date('2026-11-01T10:00:05Z') }),
    ],
    ['an unknown status', event('teleported', { from: null, to: null, numSegments: null })],
  ])(
    'When a message created from %s gets that event again, then nothing changes',
    (_what, first) => {
      const created = applyEvent(null, first);
      const again = applyEvent(created, first);
      expect(sameState(again, created)).toBe(true);
      expect(again).toEqual(created);
    },
  );

  test('When two states differ in any field, then they are not the same', () => {
    const state = fold([event('queued'), event('sent')]);
    expect(sameState(state, { ...state })).toBe(true);
    expect(sameState(state, { ...state, lastEventAt: new Date(state.lastEventAt) })).toBe(true);
    expect(sameState(state, { ...state, conflict: true })).toBe(false);
    expect(sameState(state, { ...state, errorCode: '30003' })).toBe(false);
    expect(sameState(state, { ...state, lastEventAt: new Date(clock + 1) })).toBe(false);
  });
});

test('When a redacted message (its body emptied) gets a callback that still carries the text, then the body stays empty', () => {
  const sent = applyEvent(
    null,
    event('queued', {
      source: 'proxy',
      send: { ref: 'r1', kind: 'sms', clientStatusCallback: null, body: 'my code is 4242' },
    }),
  );
  const redacted: MessageState = { ...sent, body: '' };
  const late = event('delivered', { raw: { body: 'my code is 4242' } });
  expect(applyEvent(redacted, late).body).toBe('');
  // Nor does the send's own record, should it land late (a commit timed out, the spool).
  const record = event('queued', {
    source: 'proxy',
    send: { ref: 'r1', kind: 'sms', clientStatusCallback: null, body: 'my code is 4242' },
  });
  expect(applyEvent(redacted, record).body).toBe('');
  // Not yet redacted, a message without a stored text takes the callback's (STORE_BODY).
  expect(applyEvent({ ...sent, body: null }, late).body).toBe('my code is 4242');
});
