import type { Client } from 'pg';
import { startRedactionStack } from './support';
import type { RedactionStack } from './support';
import { holdRowLock } from '../helpers/lock-waits';

/**
 * A redaction the store could not apply is retried for 15 minutes from its first failure
 * (src/proxy/redaction-retries.ts). That was timed on the wall clock, and a wall clock stepped
 * forward (a VM resumed after migration, NTP correcting a clock that ran slow) made the
 * retry think its 15 minutes are up at its next failure: it was given up after seconds, and
 * the text SignalWire deleted stayed here. Intervals elsewhere (relay, sweep, feed, rate limiter)
 * are timed on the monotonic clock for this reason. Found by review.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTredactionclockstep';

let stack: RedactionStack;
let operator: Client | undefined;

beforeAll(async () => {
  stack = await startRedactionStack({ project: PROJECT, token: TOKEN });
});
afterAll(async () => {
  jest.restoreAllMocks();
  await operator?.query('ROLLBACK').catch(() => undefined);
  await operator?.end().catch(() => undefined);
  await stack.close();
});

/** Polls on the monotonic clock (test/helpers/eventually.ts reads Date.now, mocked here). */
async function within(ms: number, check: () => Promise<boolean>): Promise<boolean> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

test('When the wall clock steps 20 min forward while a deletion’s redaction waits for a held row (5 s), then the text is still forgotten once the row is free', async () => {
  const sid = await stack.send('my one-time code is 777123');

  operator = await holdRowLock(stack.t.database.url, sid);

  stack.answer = () => ({ status: 204, body: '' });
  await expect(stack.client.messages(sid).remove()).resolves.toBe(true);
  // The redaction's first try fails on the held row (its statement timeout, 2 s): a retry waits.
  await new Promise((r) => setTimeout(r, 3_000));

  // The host's clock is stepped 20 minutes forward (and stays so); 5 s of real time pass.
  const realNow = Date.now.bind(Date);
  jest.spyOn(Date, 'now').mockImplementation(() => realNow() + 20 * 60_000);
  await new Promise((r) => setTimeout(r, 5_000));
  await operator.query('COMMIT');

  const forgotten = await within(15_000, async () => {
    const stored = await stack.stored(sid);
    return !JSON.stringify(stored.body).includes('one-time code');
  });
  expect(forgotten).toBe(true);
}, 60_000);
