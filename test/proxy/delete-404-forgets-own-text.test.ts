import { sql } from 'kysely';
import { compatNotFound, outcomeOf, sdkClient, startRedactionStack } from './support';
import type { RedactionStack } from './support';

/**
 * A deletion SignalWire answers 404 says the message is gone there (deleted by an earlier try
 * answered late, or in SignalWire's own dashboard) — or that it was never the caller's. Its text
 * is forgotten here only when the message is recorded as the caller's project's (its Basic-auth
 * username): another project's credentials can never wipe a message's text, and a message with
 * no project recorded keeps it. Any other failed answer (a 5xx) keeps the text, as before.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const OTHER = '0f6c3b59-6a2d-4a53-9f1e-5a6d0c7b8e21';
const TOKEN = 'PTdelete404own';

let stack: RedactionStack;

beforeAll(async () => {
  stack = await startRedactionStack({ project: PROJECT, token: TOKEN });
});
afterAll(() => stack.close());

/** A message sent through the proxy by PROJECT, its text stored. */
async function sent(): Promise<string> {
  const sid = await stack.send('my one-time code is 777111');
  expect(await storedText(sid)).toBe(true);
  return sid;
}

async function storedText(sid: string): Promise<boolean> {
  const stored = await stack.stored(sid);
  expect(stored.status).toBe(200);
  return JSON.stringify(stored.body).includes('one-time code');
}

function remove(sid: string, project: string): Promise<unknown> {
  return outcomeOf(sdkClient(stack.proxy.url, project, TOKEN).messages(sid).remove());
}

test('When the message’s own project deletes it and SignalWire answers 404 (already gone), then its text is forgotten', async () => {
  const sid = await sent();
  stack.answer = () => compatNotFound;
  expect(await remove(sid, PROJECT)).toBe(404);
  expect(await storedText(sid)).toBe(false);
});

test('When another project’s credentials delete the message and SignalWire answers 404, then its text is kept', async () => {
  const sid = await sent();
  stack.answer = () => compatNotFound;
  expect(await remove(sid, OTHER)).toBe(404);
  expect(stack.tap.requests.at(-1)).toMatchObject({ method: 'DELETE' });
  expect(await storedText(sid)).toBe(true);
});

test('When a message with no project recorded is deleted and SignalWire answers 404, then its text is kept', async () => {
  const sid = await sent();
  await sql`UPDATE messages SET project_id = NULL WHERE id = ${sid}`.execute(stack.t.database.db);
  stack.answer = () => compatNotFound;
  expect(await remove(sid, PROJECT)).toBe(404);
  expect(await storedText(sid)).toBe(true);
});

test('When SignalWire answers a deletion 500, then its text is kept', async () => {
  const sid = await sent();
  stack.answer = () => ({ ...compatNotFound, status: 500 });
  expect(await remove(sid, PROJECT)).toBe(500);
  expect(await storedText(sid)).toBe(true);
});
