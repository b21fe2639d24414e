import { sql } from 'kysely';
import { Registry } from 'prom-client';
import { createLogger } from '../../src/logger';
import type { MessageDto } from '../../src/messages/message-dto';
import type { RelayDto } from '../../src/relay/relays.schema';
import { createRetention } from '../../src/retention/retention';
import { startReconcilingStack } from '../reconcile/reconciling-stack';
import type { ReconcilingStack } from '../reconcile/reconciling-stack';
import { queryApi, queryJson, readFeed, settled, statsNow } from './journey-support';
import type { FeedPage } from './journey-support';

/**
 * Retention running while dashboards follow the change feed: the messages it removes must leave
 * every feature at once (the feed, the list, the stuck list, /v1/stats, the relays), a follower
 * that had read past them carries on, and one that had not is told so (410) rather than given a
 * feed with a hole.
 */

const DAY = 86_400_000;

let running: ReconcilingStack;
beforeAll(async () => {
  running = await startReconcilingStack();
});
afterAll(() => running.close());

test('When retention removes the older messages while followers read the feed, then followers, the lists, the relays and /v1/stats agree on what is left', async () => {
  const { stack, app } = running;
  const { db } = stack.app.database;
  const send = async (batch: string, prefix: string, suffixes: readonly string[]) => {
    const ids: string[] = [];
    for (const api of ['cxml', 'native'] as const) {
      for (const suffix of suffixes) {
        const to = `+1555${prefix}${api === 'cxml' ? 1 : 2}${suffix}`;
        ids.push(
          await stack.send(api, to, { body: batch, statusCallback: app.callbackUrl(`/${batch}`) }),
        );
      }
    }
    await settled(running);
    return ids;
  };

  // A: delivered, undelivered, failed, stuck (no receipt), lost callback; the older messages.
  const a = await send('a', '900', ['1000', '0003', '0004', '0007', '0008']);
  const caughtUp = await readFeed(stack, { limit: 4 });
  // A follower that read one page of A only: its cursor points into what retention removes.
  const early = await queryJson<FeedPage>(stack, '/v1/events?limit=2');

  // Retention is run as of 30 days after A's last activity, so A is past the horizon and B,
  // sent after it, is not: the boundary is read from the rows rather than waited out on a clock.
  const { rows } = await sql<{ last: Date }>`
    SELECT max(last_event_at) AS last FROM messages WHERE id = ANY(${a})`.execute(db);
  const boundary = new Date(rows[0]!.last.getTime() + 1);
  const b = await send('b', '910', ['1000', '0003', '0004']);
  const activity = await db
    .selectFrom('messages')
    .select(['id', 'last_event_at'])
    .where('id', 'in', [...a, ...b])
    .execute();
  const wrongSide = activity.filter(
    (m) => a.includes(m.id) !== m.last_event_at.getTime() < boundary.getTime(),
  );
  expect(wrongSide).toEqual([]);

  const retention = createRetention({
    db,
    logger: createLogger('silent'),
    registry: new Registry(),
    options: { retentionDays: 30, pauseMs: 0, callbackTokenTtlDays: 30 },
  })!;
  const removed = await retention.runOnce(new Date(boundary.getTime() + 30 * DAY));
  expect(removed.messages).toBe(a.length);

  const eventsOfB = await db
    .selectFrom('status_events')
    .select('seq')
    .where('message_id', 'in', b)
    .execute();
  // Sorted: the feed's order is commit order, which seq need not follow across messages.
  const seqs = (events: ReadonlyArray<{ seq: string | number }>) =>
    events.map((e) => String(e.seq)).sort();
  // The caught-up follower carries on and sees each event of B once.
  const resumed = await readFeed(stack, { after: caughtUp.cursor, limit: 4 });
  expect(resumed.status).toBe(200);
  expect(seqs(resumed.events)).toEqual(seqs(eventsOfB));
  // A follower starting now sees B only, each event once.
  const fresh = await readFeed(stack, { limit: 4 });
  expect(seqs(fresh.events)).toEqual(seqs(eventsOfB));
  expect(fresh.events.filter((e) => !b.includes(e.message_id))).toEqual([]);
  // The early follower would skip removed events: README says 410.
  const behind = await queryApi(stack, `/v1/events?after=${encodeURIComponent(early.next_cursor)}`);
  expect(behind.status).toBe(410);

  const stats = await statsNow(stack);
  const list = await queryJson<{ data: MessageDto[] }>(stack, '/v1/messages?limit=500');
  const stuckList = await queryJson<{ data: MessageDto[] }>(stack, '/v1/messages?stuck=true');
  expect(stats.total).toBe(b.length);
  expect(list.data.map((m) => m.id).sort()).toEqual([...b].sort());
  // The stuck ones were all in A.
  expect(stats.stuck).toBe(0);
  expect(stuckList.data).toEqual([]);
  const answers = await Promise.all(
    a.map(async (id) => (await queryApi(stack, `/v1/messages/${id}`)).status),
  );
  expect(answers).toEqual(a.map(() => 404));
  const relays = await queryJson<{ data: RelayDto[] }>(stack, '/v1/relays?limit=500');
  expect(relays.data.filter((r) => a.includes(r.message_id))).toEqual([]);
  const errorsCounted = stats.by_error.reduce((n, e) => n + e.count, 0);
  expect(errorsCounted).toBe(list.data.filter((m) => m.error_code !== null).length);
});
