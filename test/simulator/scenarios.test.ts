import { SCENARIO_TABLE, scenarioFor, scenarioSteps } from '../../src/simulator/scenarios';

const statuses = (...args: Parameters<typeof scenarioSteps>) =>
  scenarioSteps(...args).map((s) => (s.copies > 1 ? `${s.status}×${s.copies}` : s.status));

describe('simulator scenarios', () => {
  it('When the destination ends in a listed suffix, then that scenario is chosen, otherwise delivered', () => {
    for (const row of SCENARIO_TABLE) {
      if (row.suffix) expect(scenarioFor(`+1555765${row.suffix}`)).toBe(row.scenario);
    }
    expect(scenarioFor('+15557650000')).toBe('delivered');
    expect(scenarioFor('+15557650010')).toBe('delivered');
    expect(scenarioFor('988')).toBe('delivered');
  });

  it('When the message is an MMS, then the delivered step is dropped but failures remain', () => {
    expect(statuses('delivered', 'cxml', 'mms')).toEqual(['queued', 'sent']);
    expect(statuses('delivered', 'native', 'mms')).toEqual(['queued', 'initiated', 'sent']);
    expect(statuses('duplicates', 'cxml', 'mms')).toEqual(['queued×2', 'sent×2']);
    expect(statuses('failed', 'native', 'mms')).toEqual(['queued', 'failed']);
    expect(statuses('undelivered', 'cxml', 'mms')).toEqual(['queued', 'sent', 'undelivered']);
  });

  it('When the scenario is lost-callback, then the message reaches delivered but that callback is never sent', () => {
    for (const api of ['cxml', 'native'] as const) {
      const steps = scenarioSteps('lost-callback', api, 'sms');
      expect(steps.at(-1)).toMatchObject({ status: 'delivered', copies: 0 });
      expect(steps.slice(0, -1).every((s) => s.copies === 1)).toBe(true);
    }
  });

  it('When the scenario is no-receipt or slow, then the receipt is missing or late', () => {
    expect(statuses('no-receipt', 'cxml', 'sms')).toEqual(['queued', 'sent']);
    const slow = scenarioSteps('slow', 'native', 'sms');
    expect(slow.map((s) => s.status)).toEqual(['queued', 'initiated', 'sent', 'delivered']);
    expect(slow.at(-1)?.delaySteps).toBe(10);
  });

  it('When a scenario fails the message, then only the failing step carries the error', () => {
    const steps = scenarioSteps('undelivered', 'cxml', 'sms');
    expect(steps.map((s) => s.errorCode)).toEqual([null, null, '30003']);
    expect(scenarioSteps('failed', 'cxml', 'sms').at(-1)?.errorCode).toBe('30008');
    expect(scenarioSteps('failed', 'native', 'sms').at(-1)?.errorCode).toBe('unknown_error');
  });
});
