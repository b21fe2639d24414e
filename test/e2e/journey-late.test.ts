import { sql } from 'kysely';
import type { FeedEventDto } from '../../src/feed/feed.schema';
import type { MessageDto } from '../../src/messages/message-dto';
import { STATUS_RANK, TERMINAL_RANK, canonicalStatus } from '../../src/messages/statuses';
import type { CanonicalStatus } from '../../src/messages/statuses';
import { startReconcilingStack } from '../reconcile/reconciling-stack';
import type { ReconcilingStack } from '../reconcile/reconciling-stack';
import { eventually } from '../relay/support';
import {
  countStatuses,
  feedPath,
  messageWithHistory,
  nonZero,
  queryJson,
  relayedStatuses,
  settled,
  statsNow,
  toBeRelayed,
} from './journey-support';
import type { FeedPage } from './journey-support';
import { deliverCallback } from './stack';

/**
 * Receipts that come after the service has made up its mind: a delivery for a message the sweep
 * gave up on (stuck), and an undelivered after a delivered (a conflict). They change a message
 * that a dashboard already counted, so the message, a long-polling follower of the change feed,
 * the relays to the app, the stuck list and /v1/stats must all move together.
 */

let running: ReconcilingStack;
// A dashboard following the feed the whole time, as the status page does: long polls, one
// second each, from the start.
const followed: FeedEventDto[] = [];
let following = true;
let follower: Promise<void>;

beforeAll(async () => {
  running = await startReconcilingStack();
  follower = (async () => {
    let cursor: string | undefined;
    while (following) {
      const page = await queryJson<FeedPage>(running.stack, feedPath(cursor, 'limit=5&wait=1'));
      followed.push(...page.data);
      cursor = page.next_cursor;
    }
  })();
});

afterAll(async () => {
  following = false;
  await follower;
  await running.close();
});

/**
 * The message's status after each of its events, by the rules of DESIGN §3 replayed here: a
 * higher rank replaces the status; of two final statuses, the later one does (and makes a
 * conflict).
 */
function statusesByTheRules(events: readonly FeedEventDto[]): CanonicalStatus[] {
  const after: CanonicalStatus[] = [];
  for (const event of events) {
    // Already canonical: canonicalStatus only types it.
    const status = canonicalStatus(event.status);
    const current = after.at(-1);
    const rank = STATUS_RANK[status];
    const replaces =
      current === undefined ||
      rank > STATUS_RANK[current] ||
      (rank === STATUS_RANK[current] && rank >= TERMINAL_RANK && status !== current);
    after.push(replaces ? status : current);
  }
  return after;
}

test('When receipts come after a message was stuck or had its final status, then the message, a feed follower, the relays, the stuck list and /v1/stats agree', async () => {
  const { stack, app } = running;
  const ids: Record<string, string> = {};
  for (const api of ['cxml', 'native'] as const) {
    const statusCallback = app.callbackUrl(`/${api}`);
    // No receipt (0007): stuck once the sweep's lookups find it still `sent`.
    ids[`${api} stuck`] = await stack.send(api, `+1555800${api === 'cxml' ? 1 : 2}0007`, {
      body: 'late',
      statusCallback,
    });
    ids[`${api} conflict`] = await stack.send(api, `+1555800${api === 'cxml' ? 3 : 4}1000`, {
      body: 'late',
      statusCallback,
    });
  }
  await settled(running);
  const before = await statsNow(stack);
  expect(before.stuck).toBe(2);

  // The late receipts, signed as SignalWire signs them: the stuck ones delivered, the delivered
  // ones undelivered with an error code (each API's spelling of it).
  const simulated = (id: string) => stack.sim.messages.find((m) => m.id === id)!;
  for (const api of ['cxml', 'native'] as const) {
    const delivered = await deliverCallback(
      simulated(ids[`${api} stuck`]!),
      { status: 'delivered', errorCode: null, errorMessage: null },
      new Date(Date.now() + 2_000),
    );
    expect(delivered.status).toBeLessThan(300);
    const undelivered = await deliverCallback(
      simulated(ids[`${api} conflict`]!),
      {
        status: 'undelivered',
        errorCode: api === 'cxml' ? '30003' : 'unreachable_destination_handset',
        errorMessage: 'Unreachable destination handset',
      },
      new Date(Date.now() + 5_000),
    );
    expect(undelivered.status).toBeLessThan(300);
  }
  await settled(running);
  // The follower has read up to the last event stored.
  const { rows } = await sql<{ last: string }>`
    SELECT max(seq)::text AS last FROM status_events`.execute(stack.app.database.db);
  await eventually(() => followed.some((e) => String(e.seq) === rows[0]!.last));

  const seqs = followed.map((e) => e.seq);
  expect(seqs.filter((seq, i) => seqs.indexOf(seq) !== i)).toEqual([]);

  const historyOf: Record<string, string[]> = {};
  const followedOf: Record<string, string[]> = {};
  const statusOf: Record<string, string> = {};
  const lastFollowedStatusOf: Record<string, string | undefined> = {};
  const feedStatusesOf: Record<string, string[]> = {};
  const ruleStatusesOf: Record<string, string[]> = {};
  const relayedOf: Record<string, string[]> = {};
  const toRelayOf: Record<string, string[]> = {};
  const unexplainedErrors: string[] = [];
  let conflicts = 0;
  for (const [label, id] of Object.entries(ids)) {
    const message = await messageWithHistory(stack, id);
    const events = followed.filter((e) => e.message_id === id);
    historyOf[label] = message.history.map((h) => `${h.seq}:${h.raw_status}`);
    followedOf[label] = events.map((e) => `${e.seq}:${e.raw_status}`);
    statusOf[label] = message.status;
    lastFollowedStatusOf[label] = events.at(-1)?.message_status;
    feedStatusesOf[label] = events.map((e) => e.message_status);
    ruleStatusesOf[label] = statusesByTheRules(events);
    relayedOf[label] = relayedStatuses(app, id);
    toRelayOf[label] = toBeRelayed(label.startsWith('cxml') ? 'cxml' : 'native', message.history);
    for (const e of events) {
      if (e.error_code !== null && e.error_reason === null) {
        unexplainedErrors.push(`${label}: event ${e.seq} error_code ${e.error_code}`);
      }
    }
    if (message.conflict) conflicts++;
  }
  expect(followedOf).toEqual(historyOf);
  // Each event's message_status is what the rules make of the events up to it…
  expect(feedStatusesOf).toEqual(ruleStatusesOf);
  // …and the last one is the message's status now.
  expect(lastFollowedStatusOf).toEqual(statusOf);
  // A late receipt is relayed like any other.
  expect(relayedOf).toEqual(toRelayOf);
  // Both error codes are in SignalWire's tables: the feed explains them.
  expect(unexplainedErrors).toEqual([]);

  const after = await statsNow(stack);
  const stuckList = await queryJson<{ data: MessageDto[] }>(stack, '/v1/messages?stuck=true');
  expect(after.stuck).toBe(stuckList.data.length);
  expect(nonZero(after.by_status)).toEqual(countStatuses(Object.values(statusOf)));
  expect(after.conflicts).toBe(conflicts);
});
