import { compatNotFound, outcomeOf, rawRequest, sdkClient, startRedactionStack } from './support';
import type { CannedResponse, RedactionStack, TappedRequest } from './support';

/**
 * The proxy never checks a password: SignalWire does. A deletion that gets no answer (the
 * proxy answers 504, SignalWire may have done it) erases the stored text only for credentials
 * SignalWire has already accepted in this process (src/proxy/accepted-credentials.ts). So a
 * caller on the internal network who knows a project's id but not its token cannot erase that
 * project's texts by deleting while SignalWire is slow; the app itself, whose sends SignalWire
 * accepted, still can.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const TOKEN = 'PTgenuineapptoken';
const WRONG = 'PTguessedpassword';

let stack: RedactionStack;

beforeAll(async () => {
  stack = await startRedactionStack(
    { project: PROJECT, token: TOKEN },
    // Far above a loopback answer: the app's sends and reads must be answered in time on a
    // loaded machine (each deletion that gets no answer waits this long).
    { SIGNALWIRE_TIMEOUT_MS: '5000' },
  );
});
afterAll(() => stack.close());

/** A message the app sent through the proxy (SignalWire accepted its credentials), text stored. */
async function sent(): Promise<string> {
  const sid = await stack.send('my one-time code is 314159');
  expect(await storedText(sid)).toBe(true);
  // SignalWire slow: no deletion is answered in time (the connection goes when the test ends).
  stack.answer = () => new Promise<CannedResponse>(() => undefined);
  return sid;
}

async function storedText(sid: string): Promise<boolean> {
  const stored = await stack.stored(sid);
  expect(stored.status).toBe(200);
  return JSON.stringify(stored.body).includes('one-time code');
}

test('When a caller with the project’s id and a wrong password deletes a message and SignalWire does not answer in time, then its text is kept and the log says why', async () => {
  const sid = await sent();
  const warn = jest.spyOn(stack.t.deps.logger, 'warn');

  expect(await outcomeOf(sdkClient(stack.proxy.url, PROJECT, WRONG).messages(sid).remove())).toBe(
    504,
  );

  expect(await storedText(sid)).toBe(true);
  const kept = warn.mock.calls.filter(
    ([fields]) => (fields as Record<string, unknown>)['message_id'] === sid,
  );
  expect(kept).toEqual([
    [
      expect.objectContaining({ project: PROJECT }),
      expect.stringContaining('not yet seen accepting these credentials'),
    ],
  ]);
  // Neither the password nor the header that carries it, before pino's redaction even.
  const logged = JSON.stringify(warn.mock.calls);
  expect(logged).not.toContain(WRONG);
  expect(logged).not.toContain(Buffer.from(`${PROJECT}:${WRONG}`).toString('base64'));
  warn.mockRestore();
}, 30_000);

test('When the app whose send SignalWire accepted deletes the message and SignalWire does not answer in time, then its text is forgotten', async () => {
  const sid = await sent();

  expect(await outcomeOf(stack.client.messages(sid).remove())).toBe(504);

  expect(await storedText(sid)).toBe(false);
}, 30_000);

test('When a caller with the project’s id and a wrong password deletes a message and SignalWire answers 404, then its text is kept (a 404 can be routing, before any password is checked)', async () => {
  const sid = await stack.send('my one-time code is 271828');
  expect(await storedText(sid)).toBe(true);
  const wrong = `Basic ${Buffer.from(`${PROJECT}:${WRONG}`).toString('base64')}`;
  // SignalWire (or a gateway before it) routes these to 404 without looking at the password.
  stack.answer = () => compatNotFound;
  const port = Number(new URL(stack.proxy.url).port);
  const deletions = () => stack.tap.requests.filter((r: TappedRequest) => r.method === 'DELETE');
  const before = deletions().length;
  for (const path of [
    `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/${sid}.json`,
    // A route SignalWire does not have: not read as a deletion of the message at all.
    `/api/laml/2010-04-01/nowhere/Accounts/${PROJECT}/Messages/${sid}.json`,
  ]) {
    const answer = await rawRequest(port, {
      method: 'DELETE',
      path,
      headers: { authorization: wrong },
    });
    expect(answer.status).toBe(404);
  }
  expect(deletions().length - before).toBe(2); // both reached SignalWire

  expect(await storedText(sid)).toBe(true);
}, 30_000);

test('When SignalWire refused the app one read (403: a scoped token it knows), then the app’s unanswered deletion still forgets the text', async () => {
  const sid = await stack.send('my one-time code is 161803');
  stack.answer = () => ({
    status: 403,
    headers: { 'content-type': 'application/json' },
    body: '{"code":20403,"message":"Forbidden","status":403}',
  });
  expect(await outcomeOf(stack.client.incomingPhoneNumbers.list())).toBe(403);
  stack.answer = () => new Promise<CannedResponse>(() => undefined);

  expect(await outcomeOf(stack.client.messages(sid).remove())).toBe(504);

  expect(await storedText(sid)).toBe(false);
}, 30_000);
