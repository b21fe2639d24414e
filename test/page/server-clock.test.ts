import { createServerClock } from '../../src/page/client/server-clock';

/**
 * The page's windows end at the service's now (src/page/client/server-clock.ts), learnt from
 * the answers' Date headers, so that a browser whose clock is off still sees the latest minutes.
 */

const MINUTE = 60_000;

describe('the service clock from Date headers', () => {
  const answeredAt = Date.parse('2026-12-02T12:00:00.300Z');
  const browser = (skewMs: number) => () => answeredAt + skewMs;

  test('When the browser is three minutes slow, then now() reads the service’s clock to within a second', () => {
    const clock = createServerClock(browser(-3 * MINUTE));
    clock.observe(
      'Wed, 02 Dec 2026 12:00:00 GMT',
      answeredAt - 3 * MINUTE - 40,
      answeredAt - 3 * MINUTE,
    );
    expect(Math.abs(clock.now() - answeredAt)).toBeLessThan(1_000);
  });

  test('When the browser is ahead, then now() is moved back', () => {
    const clock = createServerClock(browser(10 * MINUTE));
    clock.observe(
      'Wed, 02 Dec 2026 12:00:00 GMT',
      answeredAt + 10 * MINUTE - 40,
      answeredAt + 10 * MINUTE,
    );
    expect(Math.abs(clock.now() - answeredAt)).toBeLessThan(1_000);
  });

  test('When the clocks agree to within the header’s second, then now() is the browser’s own (no jitter between answers)', () => {
    const clock = createServerClock(browser(0));
    for (const header of ['Wed, 02 Dec 2026 11:59:59 GMT', 'Wed, 02 Dec 2026 12:00:00 GMT']) {
      clock.observe(header, answeredAt - 40, answeredAt);
      expect(clock.now()).toBe(answeredAt);
    }
  });

  test('When an answer has no Date header or one that is not a date, then nothing moves', () => {
    const clock = createServerClock(browser(-3 * MINUTE));
    clock.observe(null, 0, 1);
    clock.observe('soon', 0, 1);
    expect(clock.now()).toBe(answeredAt - 3 * MINUTE);
  });

  test('When a round trip is long, then its wider uncertainty does not move a good offset', () => {
    const clock = createServerClock(browser(0));
    // A 6 s round trip: the service read its clock anywhere in it.
    clock.observe('Wed, 02 Dec 2026 11:59:57 GMT', answeredAt - 6_000, answeredAt);
    expect(clock.now()).toBe(answeredAt);
  });
});
