import { loadConfig } from '../../src/config';
import { configProblems } from '../helpers/config-problems';

/**
 * Number() reads '' and ' ' as 0, '0x1F90' as 8080 and '1e3' as 1000: a blank PORT would put
 * the listener on a random free port, a typo would become another setting. Numbers in the
 * environment are plain decimals, or the variable is refused by name.
 */

describe('numbers in the environment', () => {
  test.each([
    ['PORT', ' '],
    ['INTERNAL_PORT', '\t'],
    ['PORT', '0x1F90'],
    ['PORT', '1e3'],
    ['PORT', '8080.0'],
    ['SIMULATOR_PORT', ' '],
    ['CALLBACK_TOKEN_TTL_DAYS', '0x10'],
    ['DATABASE_POOL_MAX', '1e3'],
    ['RETENTION_DAYS', '3e1'],
    ['SHUTDOWN_DELAY_MS', ' '],
    ['SIGNALWIRE_TIMEOUT_MS', '0b1010'],
    ['INGEST_BATCH_WAIT_MS', ' '],
    ['RECONCILE_RATE', '0x5'],
    ['RECONCILE_RATE', '5e0'],
  ])('When %s is %j, then start-up refuses it by name', (name, value) => {
    expect(configProblems({ [name]: value })).toEqual([
      expect.stringMatching(new RegExp(`^${name}: `)),
    ]);
  });

  test('When numbers are plain decimals (spaces around them allowed), then they are read as written', () => {
    const config = loadConfig({
      PORT: ' 9090 ',
      INTERNAL_PORT: '0',
      DATABASE_POOL_MAX: '007',
      SHUTDOWN_DELAY_MS: '0',
      INGEST_BATCH_WAIT_MS: '0.5',
      RECONCILE_RATE: '2.5',
    });
    expect(config.port).toBe(9090);
    expect(config.internalPort).toBe(0);
    expect(config.databasePoolMax).toBe(7);
    expect(config.shutdownDelayMs).toBe(0);
    expect(config.ingestBatchWaitMs).toBe(0.5);
    expect(config.reconcileRate).toBe(2.5);
  });
});

/**
 * Values start-up would accept but the service could not use: PostgreSQL refuses a date
 * thousands of years back (the sweep's and the send intents' statements would fail every time,
 * long after start-up), and Node fires a timer longer than 24.8 days at once (a busy loop).
 */
describe('upper bounds the database and the timers need', () => {
  test.each([
    ['RECONCILE_SCHEDULE', '10m,3000000d', /at most 3650d/],
    ['RELAY_RETRY_SCHEDULE', '10s,400000000d', /at most 3650d/],
    ['RECONCILE_SCHEDULE', '10m,3651d', /at most 3650d/],
    ['CALLBACK_TOKEN_TTL_DAYS', '99999999', /36500/],
    ['RECONCILE_RATE', '0.0000001', /0\.001/],
  ])('When %s is %j, then start-up refuses it by name, saying the bound', (name, value, bound) => {
    const found = configProblems({ [name]: value });
    expect(found).toEqual([expect.stringMatching(new RegExp(`^${name}: `))]);
    expect(found[0]).toMatch(bound);
  });

  test.each(['1h,10m', '10m,10m'])(
    'When RECONCILE_SCHEDULE is %j (a step no later than the one before), then start-up refuses it by name',
    (value) => {
      const found = configProblems({ RECONCILE_SCHEDULE: value });
      expect(found).toEqual([
        expect.stringMatching(/^RECONCILE_SCHEDULE: .*longer than the one before/),
      ]);
    },
  );

  test('When the values are at their bounds, then they are read as written', () => {
    const config = loadConfig({
      RECONCILE_SCHEDULE: '10m,3650d',
      RELAY_RETRY_SCHEDULE: '10s,3650d',
      CALLBACK_TOKEN_TTL_DAYS: '36500',
      RECONCILE_RATE: '0.001',
    });
    expect(config.reconcileSchedule).toEqual([600_000, 3650 * 86_400_000]);
    expect(config.relayRetrySchedule).toEqual([10_000, 3650 * 86_400_000]);
    expect(config.callbackTokenTtlDays).toBe(36_500);
    expect(config.reconcileRate).toBe(0.001);
  });
});
