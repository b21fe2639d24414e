import { lookupEvent } from '../../src/reconcile/lookup-event';
import type { SweptMessage } from '../../src/reconcile/lookup-event';
import { afterLookup } from '../../src/reconcile/sweep-policy';

const SCHEDULE = [600_000, 3_600_000];
const at = new Date('2026-03-17T22:26:57.123Z');

describe('sweep policy', () => {
  test('When a lookup leaves the message where it was, then it moves to the next step, and after the last it is stuck', () => {
    const found = { kind: 'found', answer: {} } as const;
    expect(afterLookup(0, SCHEDULE, found)).toEqual({
      kind: 'advance',
      step: 1,
      stuck: false,
      error: null,
    });
    expect(afterLookup(1, SCHEDULE, found)).toEqual({
      kind: 'advance',
      step: 2,
      stuck: true,
      error: null,
    });
  });

  test('When SignalWire answers 404 or 401, then it is recorded and counts as a step, never retried in a loop', () => {
    expect(afterLookup(0, SCHEDULE, { kind: 'not_found' })).toMatchObject({
      kind: 'advance',
      step: 1,
      error: 'not_found',
    });
    expect(afterLookup(1, SCHEDULE, { kind: 'unauthorized' })).toMatchObject({
      stuck: true,
      error: 'unauthorized',
    });
  });

  test('When the lookup fails for a reason of its own, then the same step is retried later', () => {
    expect(afterLookup(0, SCHEDULE, { kind: 'failed', error: 'HTTP 502' })).toEqual({
      kind: 'retry_later',
      retryMs: 60_000,
      error: 'HTTP 502',
    });
  });
});

describe('what a lookup answer means', () => {
  const sent: SweptMessage = {
    id: 'm1',
    api: 'cxml',
    projectId: 'p1',
    status: 'sent',
    errorCode: null,
  };

  test('When the compatibility resource says undelivered with a code, then a reconcile event with that code is recorded and relayed as a form callback', () => {
    const event = lookupEvent(
      sent,
      {
        sid: 'm1',
        account_sid: 'p1',
        status: 'undelivered',
        error_code: 30003,
        error_message: 'Unreachable',
        from: '+1',
        to: '+2',
        num_segments: '1',
        num_media: '0',
        body: 'hi',
      },
      at,
      false,
    );
    expect(event).toMatchObject({
      source: 'reconcile',
      status: 'undelivered',
      errorCode: '30003',
      providerTimestamp: null,
    });
    expect(event!.raw).not.toHaveProperty('body');
    const form = new URLSearchParams(Buffer.from(event!.relay!.body, 'base64').toString());
    expect(Object.fromEntries(form)).toMatchObject({
      MessageSid: 'm1',
      MessageStatus: 'undelivered',
      ErrorCode: '30003',
      Body: 'hi',
    });
  });

  test('When the native log says initiated for a queued message, then it is sending; a JSON callback is relayed', () => {
    const event = lookupEvent(
      { ...sent, api: 'native', status: 'queued' },
      { id: 'm1', status: 'initiated' },
      at,
      false,
    );
    expect(event).toMatchObject({ status: 'sending', rawStatus: 'initiated' });
    expect(JSON.parse(Buffer.from(event!.relay!.body, 'base64').toString())).toMatchObject({
      id: 'm1',
      status: 'initiated',
      timestamp: '2026-03-17T22:26:57Z',
    });
  });

  test('When the answer says no more than the message already does, then nothing is recorded', () => {
    expect(lookupEvent(sent, { status: 'sent' }, at, false)).toBeNull();
    expect(lookupEvent(sent, { status: 'queued' }, at, false)).toBeNull();
    expect(lookupEvent(sent, { status: 42 }, at, false)).toBeNull();
    expect(lookupEvent(sent, {}, at, false)).toBeNull();
  });
});
