import type { Client } from 'pg';
import { eventually } from '../helpers/eventually';
import { startRedactionStack } from './support';
import type { RedactionStack } from './support';
import { holdRowLock } from '../helpers/lock-waits';

/**
 * README: "a deletion it accepts (DELETE of the message, the SDK's messages(sid).remove()) also
 * removes the text". When the store cannot apply that redaction right then (another session
 * holds the message's row past the redaction's statement timeout: a long transaction, a
 * failover's stall), the caller still has its answer without waiting longer, and the redaction
 * is retried in the background (src/proxy/redaction-retries.ts) until the row is free: the text
 * is gone shortly after, without the app repeating anything.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTredactiongivenup';

let stack: RedactionStack;
let operator: Client | undefined;

beforeAll(async () => {
  stack = await startRedactionStack({ project: PROJECT, token: TOKEN });
});
afterAll(async () => {
  await operator?.query('ROLLBACK').catch(() => undefined);
  await operator?.end().catch(() => undefined);
  await stack.close();
});

test('When the store is briefly unable to apply a deletion SignalWire accepted (row held 3 s), then the text is still forgotten once the store is back', async () => {
  const sid = await stack.send('my one-time code is 654321');

  // Another session holds the message's row for 3 s (a long transaction, a failover's stall).
  operator = await holdRowLock(stack.t.database.url, sid);
  setTimeout(() => void operator?.query('COMMIT'), 3_000);

  stack.answer = () => ({ status: 204, body: '' });
  // The app is told the message is deleted, no later than the store's usual wait.
  const asked = Date.now();
  await expect(stack.client.messages(sid).remove()).resolves.toBe(true);
  expect(Date.now() - asked).toBeLessThan(2_900);

  // Once the row is free again, a background retry forgets the text SignalWire deleted.
  await eventually(
    async () => {
      const stored = await stack.stored(sid);
      return !JSON.stringify(stored.body).includes('one-time code');
    },
    'the deleted text to be forgotten here',
    10_000,
  );
}, 30_000);
