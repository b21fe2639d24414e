import { eventually } from '../helpers/eventually';
import { compatNotFound, outcomeOf, startRedactionStack } from './support';
import type { CannedResponse, RedactionStack } from './support';

/**
 * An app deletes a message; SignalWire deletes it but its answer comes too late: the proxy
 * answers 504 (the outcome is unknown). The app's SDK call fails, so it retries the deletion, and
 * SignalWire now answers 404 (the message is gone). The app asked for the erasure and SignalWire
 * did it: the text is forgotten here too (pass-through.routes.ts forgetRedactedText, on the
 * unknown outcome and on the 404 to the message's own project).
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTdeleteafter504';

let stack: RedactionStack;

beforeAll(async () => {
  stack = await startRedactionStack(
    { project: PROJECT, token: TOKEN },
    // Far above a loopback answer: the send must be answered in time on a loaded machine; the
    // late answer is held by the test, however long the timeout.
    { SIGNALWIRE_TIMEOUT_MS: '5000' },
  );
});
afterAll(() => stack.close());

test('When a deletion SignalWire acted on is answered 504 and the app’s retry gets 404 (already gone), then the service does not keep the deleted text', async () => {
  const sid = await stack.send('my one-time code is 654321');

  // SignalWire: the first DELETE is acted on but answered only after the proxy has given up
  // (past SIGNALWIRE_TIMEOUT_MS), any later one finds the message gone (404).
  let deletes = 0;
  let lateAnswer: () => void = () => undefined;
  stack.answer = () =>
    deletes++ === 0
      ? new Promise<CannedResponse>((r) => (lateAnswer = () => r({ status: 204, body: '' })))
      : compatNotFound;
  expect(await outcomeOf(stack.client.messages(sid).remove())).toBe(504);
  // The app retries, as a failed call invites it to: SignalWire says the message is gone.
  expect(await outcomeOf(stack.client.messages(sid).remove())).toBe(404);

  // The late answer comes: nothing it brings may bring the text back either.
  lateAnswer();
  await eventually(
    () => stack.tap.requests.some((r) => r.method === 'DELETE' && r.response?.status === 204),
    'the late answer sent',
  );
  const stored = await stack.stored(sid);
  expect(stored.status).toBe(200);
  expect(JSON.stringify(stored.body)).not.toContain('one-time code');
}, 30_000);
