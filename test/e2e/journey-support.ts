import { sql } from 'kysely';
import type { FeedEventDto } from '../../src/feed/feed.schema';
import type { MessageDto } from '../../src/messages/message-dto';
import type { StatsDto } from '../../src/stats/stats-summary';
import { TEST_API_TOKEN } from '../helpers/test-app';
import type { ReconcilingStack } from '../reconcile/reconciling-stack';
import { eventually } from '../relay/support';
import type { CustomerApp } from '../relay/support';
import type { Stack } from './stack';

/**
 * What the journey tests (journey-*.test.ts) share: reading the query API as a dashboard does,
 * and waiting until the stack has nothing left to do, so that what they compare is final.
 */

/** A GET of the query API with the bearer token, answered as it comes. */
export function queryApi(stack: Stack, path: string): Promise<Response> {
  return fetch(`${stack.internalUrl}${path}`, {
    headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
  });
}

/** A GET of the query API that must answer 200: its JSON body. */
export async function queryJson<T>(stack: Stack, path: string): Promise<T> {
  const res = await queryApi(stack, path);
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export interface FeedPage {
  data: FeedEventDto[];
  next_cursor: string;
}

/** A page of the change feed after `cursor` (from the start without one). */
export function feedPath(cursor: string | undefined, query: string): string {
  return `/v1/events?${query}${cursor ? `&after=${encodeURIComponent(cursor)}` : ''}`;
}

/**
 * Follows the change feed from `cursor` in pages of `limit` until a page is empty, as a
 * follower catching up does. `status` is the first answer that was not 200 (the follower
 * stops there, at the cursor it had), or 200.
 */
export async function readFeed(
  stack: Stack,
  { after, limit }: { after?: string; limit: number },
): Promise<{ events: FeedEventDto[]; cursor: string | undefined; status: number }> {
  // Read until the feed has shown every event stored when the read began: the feed shows an
  // event only once no transaction that began before its commit is still open, and on a shared
  // PostgreSQL (CI's second leg) another test file's open transaction holds that back for
  // seconds — reading once to the end then missed events the store held.
  const stored = await sql<{ last: string | null }>`
    SELECT max(seq)::text AS last FROM status_events`.execute(stack.app.database.db);
  const target = Number(stored.rows[0]?.last ?? 0);
  const deadline = Date.now() + 60_000;
  const events: FeedEventDto[] = [];
  let cursor = after;
  for (;;) {
    const res = await queryApi(stack, feedPath(cursor, `limit=${limit}`));
    if (res.status !== 200) return { events, cursor, status: res.status };
    const page = (await res.json()) as FeedPage;
    events.push(...page.data);
    cursor = page.next_cursor;
    if (page.data.length > 0) continue;
    const shown = Math.max(0, ...events.map((e) => Number(e.seq)));
    if (shown >= target || Date.now() > deadline) return { events, cursor, status: 200 };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** /v1/stats over every message these tests create (the last hour, and a minute ahead). */
export function statsNow(stack: Stack): Promise<StatsDto> {
  const since = new Date(Date.now() - 3_600_000).toISOString();
  const until = new Date(Date.now() + 60_000).toISOString();
  return queryJson<StatsDto>(stack, `/v1/stats?created_since=${since}&created_until=${until}`);
}

/** GET /v1/messages/:id, which must exist, with its history. */
export async function messageWithHistory(
  stack: Stack,
  id: string,
): Promise<MessageDto & Required<Pick<MessageDto, 'history'>>> {
  const message = await stack.message(id);
  if (!message?.history) throw new Error(`message ${id} is not stored, or has no history`);
  return { ...message, history: message.history };
}

/**
 * Waits until the stack has settled: the simulator has sent every callback, the sweep has no
 * message left to look up (each is final, an MMS at `sent`, or stuck: the conditions of its
 * claim, reconcile.repository.ts SWEEPABLE), and the relay has no job pending. Read in that
 * order in one statement, so that an event the sweep records (with its relay job) cannot fall
 * between the two counts.
 */
export async function settled({ stack }: ReconcilingStack): Promise<void> {
  await stack.sim.waitForIdle();
  const { db } = stack.app.database;
  await eventually(async () => {
    const { rows } = await sql<{ sweepable: number; pending: number }>`
      SELECT
        (SELECT count(*)::int FROM messages
          WHERE status_rank < 50 AND NOT stuck AND (kind IS DISTINCT FROM 'mms' OR status <> 'sent'))
          AS sweepable,
        (SELECT count(*)::int FROM relay_jobs WHERE state = 'pending') AS pending`.execute(db);
    return rows[0]!.sweepable === 0 && rows[0]!.pending === 0;
  }, 20_000);
}

/** The statuses the app was told of one message, in the order it got them. */
export function relayedStatuses(app: CustomerApp, id: string): string[] {
  return app.received.filter((r) => r.messageId === id).map((r) => r.status);
}

/**
 * The statuses the app should be told of one message, from its history: every event but the
 * proxy's own `queued`, spelt as SignalWire spells callbacks (a compatibility lookup's REST
 * `initiated` is relayed as `sending`), and not SignalWire's own late callback of a status a
 * lookup already told (README "Reconciliation"; the exact rule is lookup-repeats.ts's, checked
 * in test/reconcile/lookup-repeats.property.test.ts).
 */
export function toBeRelayed(
  api: 'cxml' | 'native',
  history: ReadonlyArray<{ source: string; status: string; raw_status: string }>,
): string[] {
  const lookedUp = new Set<string>();
  const told: string[] = [];
  for (const event of history) {
    if (event.source === 'proxy') continue;
    if (event.source === 'reconcile') {
      lookedUp.add(event.status);
      told.push(api === 'cxml' && event.raw_status === 'initiated' ? 'sending' : event.raw_status);
    } else if (!lookedUp.has(event.status)) {
      told.push(event.raw_status);
    }
  }
  return told;
}

/** The statuses of `statuses` counted, as /v1/stats's by_status holds them (no zeros). */
export function countStatuses(statuses: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const status of statuses) counts[status] = (counts[status] ?? 0) + 1;
  return counts;
}

/** by_status of /v1/stats without the statuses no message has. */
export function nonZero(byStatus: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(byStatus).filter(([, n]) => n > 0));
}
