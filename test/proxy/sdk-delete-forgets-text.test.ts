import { startRedactionStack } from './support';
import type { RedactionStack } from './support';

/**
 * An app deletes a message through the official SDK pointed at the proxy,
 * `client.messages(sid).remove()`, to erase it (a one-time code, a person's request).
 * SignalWire answers 204: the message, its text included, is gone there — and so must its text
 * be here (STORE_BODY=true), as after the weaker erasure, an update that empties its body.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTsdkdeleteforgets';

let stack: RedactionStack;

beforeAll(async () => {
  stack = await startRedactionStack({ project: PROJECT, token: TOKEN });
});
afterAll(() => stack.close());

test('When the app deletes a message through the SDK and SignalWire answers 204, then sw-status no longer holds its text', async () => {
  const sid = await stack.send('my one-time code is 123456');

  stack.answer = () => ({ status: 204, body: '' });
  await expect(stack.client.messages(sid).remove()).resolves.toBe(true);
  expect(stack.tap.requests.at(-1)).toMatchObject({ method: 'DELETE' });

  const stored = await stack.stored(sid);
  expect(stored.status).toBe(200);
  // The text SignalWire deleted must not live on here (as after a redaction: body "").
  expect(stored.body.body ?? '').toBe('');
  expect(JSON.stringify(stored.body)).not.toContain('one-time code');
});
