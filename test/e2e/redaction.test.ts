import { sql } from 'kysely';
import { SIMULATOR_SIGNING_KEY } from '../../src/config';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { buildDelivery } from '../../src/simulator/callback-delivery';
import { holdRowLock } from '../helpers/lock-waits';
import { sdkClient } from '../proxy/support';
import { eventually, startCustomerApp, startRelayWorker } from '../relay/support';
import { E2E_PROJECT, E2E_TOKEN, deliverComposedEarlier, startStack } from './stack';
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

/** The message's relays: each one's state and its stored callback as text. */
async function relays(id: string): Promise<{ state: string; text: string | null }[]> {
  const { rows } = await sql<{ state: string; text: string | null }>`
    SELECT state, convert_from(payload, 'UTF8') AS text FROM relay_jobs
    WHERE message_id = ${id}`.execute(stack.app.database.db);
  return rows;
}

/** Runs a relay worker until every relay of the message is in `state`. */
async function relayedUntilAll(id: string, state: 'delivered' | 'dead'): Promise<void> {
  const worker = startRelayWorker(stack.app);
  try {
    await eventually(async () => {
      const rows = await relays(id);
      return rows.every((row) => row.state === state) && rows;
    });
  } finally {
    await worker.stop();
  }
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
    // Redacted, as SignalWire shows it: an empty body.
    expect(await storedTexts(id)).toEqual({ body: '', inHistory: 0 });
    expect(await historyLength(id)).toBe(events);
  },
);

test('When a callback SignalWire composed before the redaction arrives after it, then it brings no text back', async () => {
  const id = await stack.send('native', '+15557402005', { body: 'my one-time code is 424242' });
  await stack.sim.waitForIdle();
  // SignalWire's view of the message when it composed a callback it will send again.
  const before = { ...stack.sim.messages.find((m) => m.id === id)! };
  expect((await redact(id)).status).toBe(200);

  const retry = await deliverComposedEarlier(before);
  expect(retry.sent).toMatchObject({ body: 'my one-time code is 424242' });
  expect(retry.status).toBe(200);
  const events = await historyLength(id);
  expect(await storedTexts(id)).toEqual({ body: '', inHistory: 0 });
  expect(events).toBeGreaterThanOrEqual(5);
});

test('When a message whose callbacks were relayed to the app is redacted, then the relay keeps no text either', async () => {
  const app = await startCustomerApp(SIMULATOR_SIGNING_KEY);
  const worker = startRelayWorker(stack.app);
  try {
    const id = await stack.send('native', '+15557402006', {
      body: 'my one-time code is 424242',
      statusCallback: app.callbackUrl('/sms/status'),
    });
    await stack.sim.waitForIdle();
    // Every callback relayed: with STORE_BODY on, each keeps it whole.
    const delivered = await eventually(async () => {
      const rows = await relays(id);
      return rows.length >= 3 && rows.every((row) => row.state === 'delivered') && rows;
    });
    expect(delivered.every((row) => row.text?.includes('424242'))).toBe(true);

    expect((await redact(id)).status).toBe(200);
    expect((await relays(id)).filter((row) => row.text?.includes('424242') ?? false)).toEqual([]);
  } finally {
    await worker.stop();
    await app.close();
  }
});

test('When a callback is recorded while the redaction waits on the same row, then neither leaves the text behind', async () => {
  const id = await stack.send('native', '+15557402007', { body: 'my one-time code is 424242' });
  await stack.sim.waitForIdle();
  const before = { ...stack.sim.messages.find((m) => m.id === id)! };
  // The message row held for a moment, as a write-path batch holds it: the redaction and the
  // callback queue behind it, the redaction first as a rule (either order must end without
  // the text: the callback first, the redaction strips it after).
  const locker = await holdRowLock(stack.app.database.url, id);
  try {
    const redacted = redact(id);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const receipt = buildDelivery(
      1,
      before,
      { status: 'delivered', errorCode: null, errorMessage: null } as never,
      1,
      SIMULATOR_SIGNING_KEY,
      new Date(),
    );
    const recorded = fetch(receipt.url, {
      method: 'POST',
      headers: { 'content-type': receipt.contentType, 'x-signalwire-signature': receipt.signature },
      body: receipt.rawBody,
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await locker.query('COMMIT');
    expect((await redacted).status).toBe(200);
    expect((await recorded).status).toBe(200);
  } finally {
    await locker.end();
  }
  expect(await storedTexts(id)).toEqual({ body: '', inHistory: 0 });
});

test('When a message is redacted while its relays are still pending, then once they are delivered the relay keeps no text', async () => {
  const app = await startCustomerApp(SIMULATOR_SIGNING_KEY);
  try {
    const id = await stack.send('native', '+15557402008', {
      body: 'my one-time code is 424242',
      statusCallback: app.callbackUrl('/sms/status'),
    });
    await stack.sim.waitForIdle();
    // No worker yet: the callbacks' relays wait, with the text SignalWire sent.
    const pending = await relays(id);
    expect(pending.length).toBeGreaterThanOrEqual(3);
    expect(pending.every((row) => row.state === 'pending')).toBe(true);

    expect((await redact(id)).status).toBe(200);

    // The app still gets them as SignalWire sent them (relay-redaction.ts)...
    await relayedUntilAll(id, 'delivered');
    expect(app.received.some((relay) => relay.body.includes('424242'))).toBe(true);
    // ...but nothing here keeps the text once they have gone.
    expect((await relays(id)).filter((row) => row.text?.includes('424242') ?? false)).toEqual([]);
  } finally {
    await app.close();
  }
});

test('When a message is redacted while its relays are pending and they then die, then each keeps its callback without the text', async () => {
  // A private address outside RELAY_ALLOWED_NETWORKS: refused without a request, dead at once.
  const id = await stack.send('native', '+15557402009', {
    body: 'my one-time code is 424242',
    statusCallback: 'http://10.255.255.1/sms/status',
  });
  await stack.sim.waitForIdle();
  expect((await relays(id)).length).toBeGreaterThanOrEqual(3);
  expect((await redact(id)).status).toBe(200);

  await relayedUntilAll(id, 'dead');
  const dead = await relays(id);
  // Kept for a retry (POST /v1/relays/{id}/retry), without the text.
  expect(dead.every((row) => row.text !== null && row.text.includes(id))).toBe(true);
  expect(dead.filter((row) => row.text!.includes('424242'))).toEqual([]);
});
