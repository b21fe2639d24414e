// Edge cases of src/messages/projection.ts: each test kills mutants that survived
// test/unit/projection*.test.ts (StrykerJS, 2026-12-07). Pure, no database.
import { applyEvent, sameState } from '../../src/messages/projection';
import type { MessageState } from '../../src/messages/projection';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';

let clock = Date.parse('2026-11-01T10:00:00Z');
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

describe('projection (edge cases)', () => {
  test('When two different non-final statuses of the same rank arrive, then the later one wins and it is no conflict', () => {
    // queued and receiving are both rank 10: a rival, but only final rivals are a conflict.
    const state = fold([event('queued'), event('receiving')]);
    expect(state.status).toBe('receiving');
    expect(state.conflict).toBe(false);
  });

  test('When a later event names another project, then the message keeps its first known project', () => {
    expect(
      fold([event('queued', { projectId: 'p1' }), event('sent', { projectId: 'p2' })]).projectId,
    ).toBe('p1');
    expect(
      fold([event('queued', { projectId: null }), event('sent', { projectId: 'p2' })]).projectId,
    ).toBe('p2');
  });

  test('When from/to are first unknown, then a later event fills them and an event without them does not erase them', () => {
    const state = fold([
      event('queued', { from: null, to: null }),
      event('sent', { from: '+15551110000', to: '+15552220000' }),
      event('delivered', { from: null, to: null }),
    ]);
    expect(state.from).toBe('+15551110000');
    expect(state.to).toBe('+15552220000');
  });

  test("When the provider's counts follow the proxy's estimate, then the latest known counts win and a null keeps them", () => {
    const state = fold([
      event('queued', { numSegments: 1, numMedia: 1 }),
      event('sent', { numSegments: 3, numMedia: 2 }),
      event('delivered', { numSegments: null, numMedia: null }),
    ]);
    expect(state.numSegments).toBe(3);
    expect(state.numMedia).toBe(2);
  });

  test("When the send's record (with its body) arrives after a callback, then the body is the sent text", () => {
    const state = fold([
      event('sent', { source: 'callback' }),
      event('queued', {
        source: 'proxy',
        send: { ref: null, kind: 'sms', clientStatusCallback: null, body: 'hello' },
      }),
    ]);
    expect(state.body).toBe('hello');
  });

  test('When the first event is not final, then firstTerminalAt stays null until a final one', () => {
    const queued = event('queued');
    expect(fold([queued]).firstTerminalAt).toBeNull();
    const delivered = event('delivered');
    expect(fold([queued, delivered]).firstTerminalAt).toEqual(delivered.receivedAt);
  });

  test('When one state has a date where the other has null, then they are not the same (and nothing throws)', () => {
    const a = fold([event('delivered')]);
    expect(a.firstTerminalAt).not.toBeNull();
    expect(sameState(a, { ...a, firstTerminalAt: null })).toBe(false);
    expect(sameState({ ...a, firstTerminalAt: null }, a)).toBe(false);
  });

  test("When a message the proxy did not send is seen by callback only, then its kind follows the callback's NumMedia", () => {
    expect(fold([event('sent', { numMedia: 2 })]).kind).toBe('mms');
    expect(fold([event('sent', { numMedia: 0 })]).kind).toBe('sms');
    expect(fold([event('sent', { numMedia: null })]).kind).toBeNull();
    // A kind unknown at first comes from a later callback's NumMedia.
    expect(fold([event('queued', { numMedia: null }), event('sent', { numMedia: 1 })]).kind).toBe(
      'mms',
    );
  });

  test("When bodies are stored, then a callback's text is read under its own spelling", () => {
    const body = (overrides: Partial<StatusEvent>) => fold([event('sent', overrides)]).body;
    // cXML callback: `Body`; its `body` is just another field.
    expect(body({ api: 'cxml', source: 'callback', raw: { Body: 'cxml text' } })).toBe('cxml text');
    expect(body({ api: 'cxml', source: 'callback', raw: { body: 'other' } })).toBeNull();
    // A cXML lookup (REST answer): `body`.
    expect(body({ api: 'cxml', source: 'reconcile', raw: { body: 'rest text' } })).toBe(
      'rest text',
    );
    expect(body({ api: 'cxml', source: 'reconcile', raw: { Body: 'other' } })).toBeNull();
    // Native: `body`.
    expect(body({ api: 'native', source: 'callback', raw: { body: 'native text' } })).toBe(
      'native text',
    );
    // Not a string: no body.
    expect(body({ api: 'native', source: 'callback', raw: { body: 42 } })).toBeNull();
  });

  test("When a callback's Body is empty, then the body is unknown, not redacted, and the send's text still fills it", () => {
    const first = event('sent', { api: 'cxml', source: 'callback', raw: { Body: '' } });
    expect(fold([first]).body).toBeNull();
    const send = event('queued', {
      api: 'cxml',
      source: 'proxy',
      send: { ref: null, kind: 'sms', clientStatusCallback: null, body: 'sent text' },
    });
    expect(fold([first, send]).body).toBe('sent text');
  });
  test('When the first event is a callback, then the message was not sent via the proxy; with a send record it was', () => {
    expect(fold([event('sent', { source: 'callback' })]).sentViaProxy).toBe(false);
    const send = { ref: null, kind: 'sms' as const, clientStatusCallback: null, body: null };
    expect(fold([event('queued', { source: 'proxy', send })]).sentViaProxy).toBe(true);
  });
});
