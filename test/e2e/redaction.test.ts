import { sql } from 'kysely';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { sdkClient } from '../proxy/support';
import { E2E_PROJECT, E2E_TOKEN, startStack } from './stack';
import type { Stack } from './stack';

/**
 * SignalWire's native "Redact a message" (`PATCH /api/messaging/messages/{id}`, body `""`
 * only) passes through the proxy. Its answer is the message resource, which echoes the
 * `status_callback_url` the send was given: the proxy's token URL, which never leaves the
 * service (DESIGN §2). The caller sees its own callback URL there, or null, as in a create's
 * answer. With STORE_BODY=true, the text SignalWire overwrote is gone from what sw-status keeps
 * too (it "cannot be recovered" there).
 */

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ env: { STORE_BODY: 'true' } });
});

afterAll(() => stack.close());

async function redact(id: string, body = ''): Promise<Response> {
  return fetch(`${stack.internalUrl}/api/messaging/messages/${id}`, {
    method: 'PATCH',
    headers: {
      authorization: basicAuthHeader(E2E_PROJECT, E2E_TOKEN),
      'content-type': 'application/json',
    },
    body: JSON.stringify({ body }),
  });
}

test.each([
  ['no callback of its own', undefined, null],
  ['its own callback', 'https://app.example.com/sms/status', 'https://app.example.com/sms/status'],
])(
  'When a native message sent with %s is redacted through the proxy, then the answer names that callback, never the token URL',
  async (_what, statusCallback, shown) => {
    const id = await stack.send('native', '+15557402000', {
      body: 'my one-time code is 424242',
      ...(statusCallback && { statusCallback }),
    });
    await stack.sim.waitForIdle();
    // SignalWire's own record holds the token URL the proxy gave the send.
    const sent = stack.sim.messages.find((m) => m.id === id)!;
    expect(sent.statusCallback).toContain('/callbacks/native/');

    const res = await redact(id);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).not.toContain('/callbacks/');
    expect(JSON.parse(text)).toMatchObject({ id, body: '', status_callback_url: shown });
    expect(sent.body).toBe('');
  },
);

test('When SignalWire refuses the redaction (a body other than ""), then its 422 comes back as it gave it', async () => {
  const id = await stack.send('native', '+15557402003', { body: 'x' });
  await stack.sim.waitForIdle();
  const res = await redact(id, 'another text');
  expect(res.status).toBe(422);
  expect(await res.json()).toMatchObject({ errors: [{ code: 'invalid_body' }] });
  expect(stack.sim.messages.find((m) => m.id === id)!.body).toBe('x');
  expect(await storedTexts(id)).toEqual({ body: 'x', inHistory: await historyLength(id) });
});

async function historyLength(id: string): Promise<number> {
  return (await stack.message(id))?.history?.length ?? 0;
}

/** The message's stored text, and how many of its history's payloads hold a text. */
async function storedTexts(id: string): Promise<{ body: string | undefined; inHistory: number }> {
  const message = await stack.message(id);
  const { rows } = await sql<{ n: string }>`
    SELECT count(*) AS n FROM status_events
    WHERE message_id = ${id} AND (raw ? 'Body' OR raw ? 'body')`.execute(stack.app.database.db);
  return { body: message?.body, inHistory: Number(rows[0]!.n) };
}

test.each(['native', 'cxml'] as const)(
  'When a %s message is redacted through the proxy with STORE_BODY on, then its text is gone from the message and its history',
  async (api) => {
    const id = await stack.send(api, '+15557402004', { body: 'my one-time code is 424242' });
    await stack.sim.waitForIdle();
    // The send's record and each of its callbacks kept the text.
    const events = await historyLength(id);
    expect(events).toBeGreaterThanOrEqual(4);
    expect(await storedTexts(id)).toEqual({
      body: 'my one-time code is 424242',
      inHistory: events,
    });

    if (api === 'native') expect((await redact(id)).status).toBe(200);
    else {
      // The official SDK's update, as an app redacts a compatibility message.
      const updated = await sdkClient(stack.internalUrl, E2E_PROJECT, E2E_TOKEN)
        .messages(id)
        .update({ body: '' });
      expect(updated.body).toBe('');
    }
    expect(await storedTexts(id)).toEqual({ body: undefined, inHistory: 0 });
    expect(await historyLength(id)).toBe(events);
  },
);
