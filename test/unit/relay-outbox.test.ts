import { applyEvent } from '../../src/messages/projection';
import type { MessageState } from '../../src/messages/projection';
import { hostOf, relayJobsFor } from '../../src/messages/relay-outbox';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';

function event(overrides: Partial<StatusEvent> = {}): StatusEvent {
  return statusEvent('sent', {
    messageId: 'm1',
    relay: {
      method: 'POST',
      contentType: 'application/x-www-form-urlencoded',
      body: 'YT0x',
      keyRef: 'k',
    },
    ...overrides,
  });
}

function stateWith(callback: string | null): Map<string, MessageState> {
  const proxied = event({
    source: 'proxy',
    relay: undefined,
    send: { ref: 'r', kind: 'sms', clientStatusCallback: callback, body: null },
  });
  return new Map([['m1', applyEvent(null, proxied)]]);
}

describe('relay outbox: which new events become relay jobs', () => {
  test('When a message has a client callback, then each new callback, replay or reconcile event becomes a job, in order', () => {
    const events = [
      event(),
      event({ source: 'replay', rawStatus: 'delivered' }),
      event({ source: 'reconcile' }),
    ];
    const jobs = relayJobsFor(
      events.map((e, i) => ({ event: e, key: `k${i}` })),
      stateWith('https://app.example.com:8443/status?x=1'),
    );
    expect(jobs.map((j) => [j.n, j.dedupe_key, j.host, j.payload, j.signing_key_ref])).toEqual([
      [0, 'k0', 'https://app.example.com:8443', 'YT0x', 'k'],
      [1, 'k1', 'https://app.example.com:8443', 'YT0x', 'k'],
      [2, 'k2', 'https://app.example.com:8443', 'YT0x', 'k'],
    ]);
  });

  test('When the event is the proxy’s own record, carries no payload, or the message has no client callback, then no job', () => {
    const states = stateWith('https://app.example.com/status');
    expect(relayJobsFor([{ event: event({ source: 'proxy' }), key: 'a' }], states)).toEqual([]);
    expect(relayJobsFor([{ event: event({ relay: undefined }), key: 'b' }], states)).toEqual([]);
    expect(relayJobsFor([{ event: event(), key: 'c' }], stateWith(null))).toEqual([]);
    expect(relayJobsFor([{ event: event({ messageId: 'other' }), key: 'd' }], states)).toEqual([]);
  });

  test('When the callback URL does not parse, then its host is "invalid" (the worker refuses it)', () => {
    expect(hostOf('not a url')).toBe('invalid');
    expect(hostOf('http://[::1]:80/x')).toBe('http://[::1]');
  });

  test('When one host is spelled several ways (case, default port, a trailing dot), then it is one host for the per-host limits', () => {
    const spellings = [
      'https://app.example.test/cb',
      'https://APP.example.test:443/cb',
      'https://app.example.test./cb',
      'https://App.Example.Test.:443/other',
    ];
    expect(new Set(spellings.map(hostOf))).toEqual(new Set(['https://app.example.test']));
    expect(hostOf('http://app.example.test.:8080/cb')).toBe('http://app.example.test:8080');
    // A name of its own, not the same host.
    expect(hostOf('https://app.example.test.evil/cb')).toBe('https://app.example.test.evil');
  });
});
