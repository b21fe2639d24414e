import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { eventually } from '../helpers/eventually';
import { startTappedProxy } from './support';
import type { TappedProxy } from './support';

/**
 * Redactions run in turns, two at once (redaction-retries.ts inRedactionTurn), so that a
 * message row another session holds cannot take the pool. An app deleting a batch of its
 * messages at once (a privacy purge, nothing held by anyone) is legitimate load: every deletion
 * SignalWire accepted must forget the text here too, if not before its caller's answer then
 * soon after. With a turn waited for 1 s at most, a burst of 500 kept 13 to 177 texts.
 */

const PROJECT = 'd4e5f6a7-b8c9-4012-9ef0-3456789abcde';
const AUTH = basicAuthHeader(PROJECT, 'PTbatchdelete');
const COUNT = 300;

let stack: TappedProxy;

beforeAll(async () => {
  stack = await startTappedProxy(() => ({ status: 204, body: '' }), { STORE_BODY: 'true' });
});
afterAll(() => stack.close());

test('When an app deletes a batch of its messages at once and SignalWire accepts every deletion, then every one loses its text here', async () => {
  const { t } = stack;
  const ids = Array.from({ length: COUNT }, () => randomUUID());
  await sql`
    INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at,
      created_at, updated_at, last_event_at, "to", "from", body)
    SELECT id, 'cxml', 'delivered', 'delivered', 50, now(), now(), now(), now(),
      '+15550000000', '+15551111111', 'secret text'
    FROM unnest(${ids}::text[]) id`.execute(t.database.db);
  // What a delivered message has here: its callbacks' events (with the text) and their relays.
  await sql`
    INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
      dedupe_key, raw, message_status)
    SELECT id, 'cxml', s, s, 'callback', now(), sha256(convert_to(id || s, 'UTF8')),
      jsonb_build_object('Body', 'secret text', 'MessageStatus', s), s
    FROM unnest(${ids}::text[]) id, unnest(ARRAY['queued', 'sent', 'delivered']) s`.execute(
    t.database.db,
  );
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, state, attempts, payload, delivered_at)
    SELECT id, 'https://app.example.com/cb', 'https://app.example.com:443', 'POST', 'delivered', 1,
      convert_to('Body=secret+text&MessageStatus=' || s, 'UTF8'), now()
    FROM unnest(${ids}::text[]) id, unnest(ARRAY['sent', 'delivered']) s`.execute(t.database.db);

  // Each redaction a little slow, as on a busy or distant database: the burst takes seconds
  // in its two turns, longer than a short wait for a turn would allow the last ones.
  await sql`CREATE FUNCTION test_slow_redaction() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$`.execute(t.database.db);
  await sql`CREATE TRIGGER test_slow_redaction BEFORE UPDATE OF body ON messages
            FOR EACH ROW EXECUTE FUNCTION test_slow_redaction()`.execute(t.database.db);

  const started = performance.now();
  const statuses = await Promise.all(
    ids.map(async (id) => {
      const res = await fetch(
        `${stack.proxy.url}/api/laml/2010-04-01/Accounts/${PROJECT}/Messages/${id}.json`,
        {
          method: 'DELETE',
          headers: { Authorization: AUTH },
        },
      );
      await res.arrayBuffer();
      return res.status;
    }),
  );
  const ms = performance.now() - started;
  expect(statuses).toEqual(Array(COUNT).fill(204));

  const kept = async () => {
    const { rows } = await sql<{ messages: number; events: number; relays: number }>`
      SELECT
        (SELECT count(*)::int FROM messages WHERE id = ANY(${ids}::text[]) AND body <> '') AS messages,
        (SELECT count(*)::int FROM status_events WHERE message_id = ANY(${ids}::text[])
           AND raw ? 'Body') AS events,
        (SELECT count(*)::int FROM relay_jobs WHERE message_id = ANY(${ids}::text[])
           AND payload IS NOT NULL) AS relays`.execute(t.database.db);
    return rows[0]!;
  };
  console.log(`${COUNT} deletions answered in ${Math.round(ms)} ms; kept then: %j`, await kept());
  // The redactions not done by their caller's answer go on after it: each forgets the message's
  // text, then its relays' copies (a transaction each), so all three are waited for.
  const none = (left: { messages: number; events: number; relays: number }) =>
    left.messages + left.events + left.relays === 0;
  await eventually(async () => none(await kept()), 'every text forgotten', 60_000);
  expect(await kept()).toEqual({ messages: 0, events: 0, relays: 0 });
}, 120_000);
