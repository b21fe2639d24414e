import { sql } from 'kysely';
import { startStack } from './stack';
import type { Stack } from './stack';

/**
 * An app sends a text holding a NUL character (U+0000) through the proxy, with STORE_BODY on.
 * SignalWire takes it and echoes it in every callback. PostgreSQL can store a NUL neither in
 * text nor in jsonb: the send went unrecorded ("accepted by SignalWire but not recorded") and
 * every callback was refused with a 400, so the message never existed for the query API. Now
 * what is stored goes without the NUL, and the app's own callback gets the bytes as sent.
 */

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ env: { STORE_BODY: 'true' } });
});

afterAll(() => stack.close());

test.each(['cxml', 'native'] as const)(
  'When a %s send holds a NUL in its text, then the send and all its callbacks are recorded without it, and relayed with it',
  async (api) => {
    const to = `+1555${api === 'cxml' ? '7' : '8'}401000`;
    const id = await stack.send(api, to, {
      body: 'a\u0000b',
      statusCallback: 'https://app.example.com/sms/status',
    });
    await stack.sim.waitForIdle();

    const deliveries = stack.sim.deliveries.filter((d) => d.messageId === id);
    expect(deliveries.length).toBeGreaterThanOrEqual(3);
    // None refused for its NUL (the bug: a 400 each, which SignalWire does not retry). A 503 is
    // the store being briefly out of reach on a loaded machine (the suite shares one
    // PostgreSQL), retried by SignalWire like any other: each callback ends acknowledged.
    for (const delivery of deliveries) {
      const codes = delivery.attempts.map((attempt) => attempt.statusCode);
      expect(codes.filter((code) => code !== 200 && code !== 503)).toEqual([]);
      expect(codes.at(-1)).toBe(200);
    }
    const message = await stack.message(id);
    expect(message).toMatchObject({ status: 'delivered', body: 'ab' });
    const sources = (message?.history ?? []).map((row) => row.source);
    expect(sources.filter((source) => source === 'proxy')).toHaveLength(1);
    expect(sources.filter((source) => source === 'callback')).toHaveLength(deliveries.length);

    // The relay keeps each callback as SignalWire sent it, NUL and all.
    const { rows } = await sql<{ payload: Buffer }>`
      SELECT payload FROM relay_jobs WHERE message_id = ${id}`.execute(stack.app.database.db);
    expect(rows).toHaveLength(deliveries.length);
    const nul = api === 'cxml' ? '%00' : '\\u0000';
    for (const row of rows) expect(row.payload.toString()).toContain(`a${nul}b`);
  },
);
