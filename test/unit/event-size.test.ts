import { approximateEventBytes } from '../../src/ingest/event-size';
import { statusEvent } from '../factories';

describe('approximateEventBytes', () => {
  test('When a callback carries a large field, then its size counts it', () => {
    const small = approximateEventBytes(statusEvent('delivered'));
    const large = approximateEventBytes(
      statusEvent('delivered', { raw: { Padding: 'x'.repeat(60_000) } }),
    );
    expect(small).toBeLessThan(2_000);
    expect(large - small).toBeGreaterThanOrEqual(60_000);
  });

  test('When the payload is nested 20,000 levels deep, then it is measured without overflowing the stack', () => {
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 20_000; i++) deep = { a: deep };
    expect(approximateEventBytes(statusEvent('sent', { raw: deep }))).toBeGreaterThan(20_000);
  });

  test('When the payload holds arrays, then their items count', () => {
    const items = approximateEventBytes(
      statusEvent('sent', { raw: { MediaUrl: ['u'.repeat(1000), 'v'.repeat(1000)] } }),
    );
    expect(items - approximateEventBytes(statusEvent('sent', { raw: {} }))).toBeGreaterThanOrEqual(
      2_000,
    );
  });

  test('When an event carries the copy of its body kept for the relay, then its size counts that copy too', () => {
    const raw = { id: 'a1b2c3d4-e5f6-7890-abcd-ef1234567890', padding: 'x'.repeat(60 * 1024) };
    const body = Buffer.from(JSON.stringify(raw)).toString('base64');
    const event = statusEvent('delivered', { raw });
    const without = approximateEventBytes(event);
    event.relay = { method: 'POST', contentType: 'application/json', body, keyRef: null };
    // What the event holds: the parsed fields plus the base64 copy of the body.
    expect(approximateEventBytes(event) - without).toBeGreaterThanOrEqual(body.length);
  });
});
