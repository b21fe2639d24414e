import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { E2E_PROJECT, E2E_TOKEN, startStack } from './stack';
import type { Stack } from './stack';

/**
 * SignalWire's native "Redact a message" (`PATCH /api/messaging/messages/{id}`, body `""`
 * only) passes through the proxy. Its answer is the message resource, which echoes the
 * `status_callback_url` the send was given: the proxy's token URL, which never leaves the
 * service (DESIGN §2). The caller sees its own callback URL there, or null, as in a create's
 * answer.
 */

let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
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
});
