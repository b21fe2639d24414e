import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { sql } from 'kysely';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';
import { readableAt } from '../helpers/readable-at';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

interface FeedPage {
  data: Array<Record<string, unknown> & { seq: number; message_id: string; status: string }>;
  next_cursor: string;
}

/**
 * Follows the feed from `after` (long-polling) until it has given `enough` events, or, given a
 * function, until `enough(events)` says so; returns them and the cursor after them. The horizon is the whole cluster's:
 * another test file's open transaction can hold events back for a moment, so a test waits for
 * what it expects.
 */
async function follow(
  after: string,
  enough: number | ((events: FeedPage['data']) => boolean),
  query = '',
) {
  const events: FeedPage['data'] = [];
  const done = typeof enough === 'number' ? () => events.length >= enough : () => enough(events);
  let cursor = after;
  const deadline = Date.now() + 20_000;
  while (!done() && Date.now() < deadline) {
    const res = await get(`/v1/events?limit=50&wait=2&after=${cursor}${query}`).expect(200);
    const page = res.body as FeedPage;
    events.push(...page.data);
    cursor = page.next_cursor;
  }
  return { events, cursor };
}

/** The cursor of the current end of the feed. */
async function now(): Promise<string> {
  const res = await get('/v1/events?after=now').expect(200);
  expect(res.body.data).toEqual([]);
  return res.body.next_cursor as string;
}

const record = (events: StatusEvent[]) =>
  recordEvents(t.database.db, events, { onCommitted: t.feedSignal.committed });

describe('GET /v1/events', () => {
  test('When events are stored, then the feed gives each once, in order, with its message status and error reason', async () => {
    const start = await now();
    const id = randomUUID();
    const base = Date.parse('2026-11-20T10:00:00Z');
    await record([
      statusEvent('queued', { messageId: id, receivedAt: new Date(base), source: 'proxy' }),
    ]);
    await record([
      statusEvent('undelivered', {
        messageId: id,
        receivedAt: new Date(base + 5000),
        errorCode: '30003',
      }),
      statusEvent('sent', { messageId: id, receivedAt: new Date(base + 6000) }),
    ]);
    const { events } = await follow(start, 3);
    expect(events).toEqual([
      expect.objectContaining({
        message_id: id,
        status: 'queued',
        message_status: 'queued',
        source: 'proxy',
      }),
      expect.objectContaining({
        status: 'undelivered',
        error_code: '30003',
        error_reason: 'Destination handset unreachable',
        message_status: 'undelivered',
      }),
      // A late `sent` does not move the message back: its status after this event is still
      // undelivered.
      expect.objectContaining({
        status: 'sent',
        message_status: 'undelivered',
        error_reason: null,
      }),
    ]);
    expect(Object.keys(events[0]!).sort()).toEqual(
      [
        'seq',
        'message_id',
        'api',
        'status',
        'raw_status',
        'error_code',
        'error_reason',
        'error_message',
        'source',
        'provider_timestamp',
        'received_at',
        'message_status',
      ].sort(),
    );
  });

  test('When events carry arbitrary times, then the feed writes them exactly as the message history does', async () => {
    // The feed's events are serialised by PostgreSQL (to_char), the history's by JavaScript
    // (toISOString): both must give the same text for every millisecond, a timestamp stored
    // through a double (to_timestamp) included, and the same fields otherwise.
    const start = await now();
    const id = randomUUID();
    const times = Array.from(
      { length: 40 },
      (_, i) => Date.parse('2026-11-20T10:00:00Z') + i * 1_001 + Math.floor(Math.random() * 1_000),
    );
    await record(
      times.map((at, i) =>
        statusEvent(i % 2 ? 'sent' : 'queued', {
          messageId: id,
          receivedAt: new Date(at),
          providerTimestamp: i % 3 ? new Date(at - 999) : null,
          errorMessage: i % 5 ? null : `odd "text" \\ ${'é'} \n ${i}`,
        }),
      ),
    );
    const history = (await get(`/v1/messages/${id}`).expect(200)).body.history as Array<
      Record<string, unknown>
    >;
    // Repeats of a status without a provider timestamp are duplicates (one stored).
    expect(history.length).toBeGreaterThan(20);
    const { events } = await follow(start, history.length);
    expect(events).toHaveLength(history.length);
    for (const event of events) {
      const stored = history.find((entry) => entry.seq === event.seq);
      expect(stored).toBeDefined();
      for (const field of ['received_at', 'provider_timestamp', 'error_message', 'raw_status']) {
        expect([field, event[field as keyof typeof event]]).toEqual([field, stored![field]]);
      }
    }
    const written = new Set(times.map((at) => new Date(at).toISOString()));
    expect(events.every((event) => written.has(String(event.received_at)))).toBe(true);
  });

  test('When after=now, then the page is empty and its cursor gives what commits later', async () => {
    const before = statusEvent('sent');
    await record([before]);
    const end = await now();
    const later = statusEvent('delivered');
    await record([later]);
    // What committed just before may come too, while another transaction on the cluster was
    // still open (the horizon had not passed it yet) — possibly alone on the first page, with
    // the later event held back by that transaction: follow until the later one comes.
    const { events } = await follow(end, (seen) =>
      seen.some((e) => e.message_id === later.messageId),
    );
    const ids = events.map((e) => e.message_id);
    expect(ids[ids.length - 1]).toBe(later.messageId);
    expect(ids.filter((id) => id !== before.messageId)).toEqual([later.messageId]);
  });

  test('When a filter is given, then only matching events come, and the cursor moves past the others', async () => {
    const start = await now();
    const failed = statusEvent('failed', { errorCode: '30008' });
    await record([statusEvent('sent'), failed, statusEvent('delivered', { api: 'native' })]);
    const { events, cursor } = await follow(start, 1, '&status=failed,undelivered&api=cxml');
    expect(events.map((e) => e.message_id)).toEqual([failed.messageId]);
    // The three came in one transaction: the filtered page's cursor is past all of them.
    const rest = await get(`/v1/events?after=${cursor}`).expect(200);
    expect(rest.body.data).toEqual([]);
  });

  test('When a cursor is forged or altered, then the answer is a 400 and nothing is read', async () => {
    const cursor = await now();
    const [payload, mac] = cursor.split('.');
    const moved = Buffer.from(
      Buffer.from(payload!, 'base64url')
        .toString()
        .replace(/\.\d+$/, '.1'),
    ).toString('base64url');
    for (const bad of [`${moved}.${mac}`, 'abc', `${payload}.AAAAAAAAAAAAAAAAAAAAAA`, '..']) {
      const res = await get(`/v1/events?after=${bad}`).expect(400);
      expect(res.body.error.code).toBe('invalid_cursor');
    }
    await get('/v1/events?limit=0').expect(400);
    await get('/v1/events?wait=31').expect(400);
    await get('/v1/events?status=nope').expect(400);
    await get('/v1/events?stauts=failed').expect(400);
  });

  test('When nothing commits, then a long-poll answers an empty page after wait', async () => {
    const end = await now();
    const started = Date.now();
    const res = await get(`/v1/events?after=${end}&wait=1`).expect(200);
    expect(res.body.data).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  test('When an event commits during a long-poll, then the long-poll answers with it', async () => {
    const end = await now();
    const event = statusEvent('sent');
    const poll = get(`/v1/events?after=${end}&wait=20`);
    const answered = poll.then((res) => res);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await record([event]);
    const readable = readableAt(t.database.db, event.messageId, answered);
    const res = await answered;
    const answeredAt = Date.now();
    expect(res.status).toBe(200);
    expect(res.body.data.map((e: { message_id: string }) => e.message_id)).toEqual([
      event.messageId,
    ]);
    // Counted from when the feed could read the event, not from its commit: another test
    // file's writing transaction open on the shared PostgreSQL holds the horizon (and the
    // event) back for as long as it runs. Generous: the machine is shared; the point is "not
    // after the 20 s wait".
    expect(answeredAt - (await readable)).toBeLessThan(5000);
  });

  test('When events were stored before migration 0003 (no message_status), then the feed folds them', async () => {
    const id = randomUUID();
    const base = Date.parse('2026-11-21T10:00:00Z');
    const start = await now();
    await record([
      statusEvent('delivered', { messageId: id, receivedAt: new Date(base) }),
      statusEvent('sent', { messageId: id, receivedAt: new Date(base + 1000) }),
    ]);
    await sql`UPDATE status_events SET message_status = NULL WHERE message_id = ${id}`.execute(
      t.database.db,
    );
    const { events } = await follow(start, 2);
    expect(events.map((e) => [e.status, e.message_status])).toEqual([
      ['delivered', 'delivered'],
      ['sent', 'delivered'],
    ]);
  });

  test('When the same page is asked again with its ETag, then the answer is 304', async () => {
    // Long-polled: the first page is not empty while another file's transaction holds it back.
    const first = await get('/v1/events?limit=1&wait=5').expect(200);
    expect(first.body.data).toHaveLength(1);
    const again = await get('/v1/events?limit=1&wait=5')
      .set('If-None-Match', first.headers.etag!)
      .expect(304);
    expect(again.text).toBe('');
  });
});
