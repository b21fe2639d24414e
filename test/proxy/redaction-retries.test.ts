import type { Client } from 'pg';
import type { Db } from '../../src/db/database';
import type { Logger } from '../../src/logger';
import { createRedactionRetries } from '../../src/proxy/redaction-retries';
import type { RedactionRetryTimings } from '../../src/proxy/redaction-retries';
import { eventually } from '../helpers/eventually';
import { startRedactionStack } from './support';
import type { RedactionStack } from './support';
import { holdRowLock } from '../helpers/lock-waits';

/**
 * A redaction the store could not apply when it was asked is retried in the background
 * (src/proxy/redaction-retries.ts): with backoff, one pending retry per message, a bounded
 * number of them, until it is done, its time is up (then given up, logged once at error level
 * with the message id and never the text) or the process stops. Timings are shortened here.
 */

const FAST: Partial<RedactionRetryTimings> = { firstDelayMs: 10, maxDelayMs: 40 };
const SCOPE = { any: true } as const;

function recordingLogger() {
  const lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
  const at =
    (level: string) =>
    (fields: Record<string, unknown>, msg: string): void => {
      lines.push({ level, fields, msg });
    };
  const logger = { info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger;
  return { logger, lines };
}

const db = {} as Db;

describe('the retries alone', () => {
  test('When a redaction keeps failing, then it is retried with growing delays and given up once its time is up, logged once', async () => {
    const { logger, lines } = recordingLogger();
    const times: number[] = [];
    const retries = createRedactionRetries({
      db,
      logger,
      // 3 s, not 1: the four tries take ~110 ms of delays, and a loaded machine that holds the
      // event loop up for most of a second would otherwise end the retries before the fourth.
      timings: { ...FAST, giveUpAfterMs: 3_000 },
      attempt: () => {
        times.push(Date.now());
        return Promise.reject(new Error('canceling statement due to statement timeout'));
      },
    });
    retries.retry('m-1', SCOPE, { request_id: 'r-1' });
    expect(retries.pending()).toBe(1);
    await eventually(() => retries.pending() === 0, 'the retry to be given up', 20_000);
    const gaps = times.slice(1).map((at, i) => at - times[i]!);
    expect(times.length).toBeGreaterThanOrEqual(4);
    // Each wait at least its delay, doubling from 20 ms (after the first try's 10) up to 40: a
    // loaded machine only makes them longer, never shorter (1 ms for the clock's rounding).
    gaps.forEach((gap, i) => expect(gap).toBeGreaterThanOrEqual(Math.min(20 * 2 ** i, 40) - 1));
    const errors = lines.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.fields).toMatchObject({ message_id: 'm-1', request_id: 'r-1' });
    // No more attempts after it is given up.
    const attempts = times.length;
    await new Promise((r) => setTimeout(r, 150));
    expect(times.length).toBe(attempts);
    await retries.stop();
  });

  test('When a redaction succeeds on a retry, then it is no longer pending and nothing is logged at error', async () => {
    const { logger, lines } = recordingLogger();
    let calls = 0;
    const retries = createRedactionRetries({
      db,
      logger,
      timings: FAST,
      attempt: () => (++calls < 3 ? Promise.reject(new Error('held')) : Promise.resolve()),
    });
    retries.retry('m-2', SCOPE);
    await eventually(() => retries.pending() === 0, 'the retry to succeed', 20_000);
    expect(calls).toBe(3);
    expect(lines.filter((l) => l.level === 'error')).toHaveLength(0);
    await retries.stop();
  });

  test('When the same message is asked again while its retry waits, then one retry is pending; beyond the bound one is dropped and logged', async () => {
    const { logger, lines } = recordingLogger();
    const retries = createRedactionRetries({
      db,
      logger,
      timings: { ...FAST, firstDelayMs: 60_000, maxDelayMs: 60_000, maxPending: 2 },
      attempt: () => Promise.reject(new Error('held')),
    });
    retries.retry('m-3', SCOPE);
    retries.retry('m-3', SCOPE);
    expect(retries.pending()).toBe(1);
    retries.retry('m-4', SCOPE);
    retries.retry('m-5', SCOPE);
    expect(retries.pending()).toBe(2);
    expect(lines.filter((l) => l.level === 'error').map((l) => l.fields['message_id'])).toEqual([
      'm-5',
    ]);
    await retries.stop();
  });

  test('When the retries are stopped, then no attempt follows, and the messages still pending and those whose redaction fails afterwards are said at error level', async () => {
    const { logger, lines } = recordingLogger();
    let calls = 0;
    const retries = createRedactionRetries({
      db,
      logger,
      timings: { ...FAST, firstDelayMs: 50 },
      attempt: () => {
        calls += 1;
        return Promise.reject(new Error('held'));
      },
    });
    retries.retry('m-6', SCOPE);
    await retries.stop();
    expect(retries.pending()).toBe(0);
    retries.retry('m-7', SCOPE);
    await new Promise((r) => setTimeout(r, 200));
    expect(calls).toBe(0);
    const errors = lines.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(2);
    expect(errors[0]!.fields).toMatchObject({ message_ids: ['m-6'], count: 1 });
    // A redaction still under way at stop() that failed afterwards: named too, not retried.
    expect(errors[1]!.fields).toMatchObject({ message_id: 'm-7' });
  });
});

describe('through the proxy, the message’s row held longer than the retries last', () => {
  const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
  const TOKEN = 'PTredactionretriesgiveup';

  let stack: RedactionStack;
  let operator: Client | undefined;

  beforeAll(async () => {
    stack = await startRedactionStack(
      { project: PROJECT, token: TOKEN },
      {},
      { redactionRetryTimings: { firstDelayMs: 50, maxDelayMs: 100, giveUpAfterMs: 1_500 } },
    );
  });
  afterAll(async () => {
    await operator?.query('ROLLBACK').catch(() => undefined);
    await operator?.end().catch(() => undefined);
    await stack.close();
  });

  test('When the row stays held past the retries’ limit, then the redaction is given up: logged once at error with the message id and no text, and the text stays', async () => {
    const { t } = stack;
    const errors = jest.spyOn(t.deps.logger, 'error');
    const sid = await stack.send('my one-time code is 424242');

    operator = await holdRowLock(t.database.url, sid);

    stack.answer = () => ({ status: 204, body: '' });
    await expect(stack.client.messages(sid).remove()).resolves.toBe(true);
    const retries = t.deps.redactionRetries!;
    await eventually(() => retries.pending() > 0, 'the redaction to wait for a retry', 20_000);
    await eventually(() => retries.pending() === 0, 'the redaction to be given up', 15_000);
    await operator.query('COMMIT');

    const givenUp = errors.mock.calls.filter(([fields]) => {
      return (fields as Record<string, unknown>)['message_id'] === sid;
    });
    expect(givenUp).toHaveLength(1);
    expect(JSON.stringify(givenUp[0])).not.toContain('one-time code');

    // Nothing retries it any more: the text stays (the operator repeats the deletion).
    await new Promise((r) => setTimeout(r, 500));
    const stored = await stack.stored(sid);
    expect(JSON.stringify(stored.body)).toContain('one-time code');
  }, 30_000);
});
