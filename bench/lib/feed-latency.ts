import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import { feedCursors } from '../../src/feed/feed-cursor';
import { signFormParams } from '../../src/signalwire/signing';
import { withClient } from './database';
import { latencyResult, measureGets, measureGetsAtRate } from './http-latency';
import type { LatencyResult } from './http-latency';
import type { Server } from './processes';
import { BENCH_PUBLIC_BASE_URL, BENCH_SIGNING_KEY, CALLBACK_PATH } from './request-pool';
import { BENCH_API_TOKEN } from './sw-status';

// Four dashboards at once, open loop (bench/lib/http-latency.ts measureGetsAtRate): together
// 160 feed pages a second — four consumers each reading 4 000 events a second, the most this
// machine ingests — and 8 stats calls a second (a status page refreshes its stats about once a
// second while events arrive, once every 30 s otherwise).
const FEED_PAGES_PER_SECOND = 160;
const STATS_PER_SECOND = 8;

/**
 * Four clients in a closed loop, each sending its next request as soon as the last is answered:
 * the most the replica answers per second with its PostgreSQL (and these clients) on the same
 * two cores. Its latency is mostly time queued behind the other three: reported, not a target.
 */
async function saturated(port: number, paths: readonly string[], headers: Record<string, string>) {
  const started = performance.now();
  const result = await measureGets(port, paths, 4, headers);
  const seconds = (performance.now() - started) / 1000;
  return { ...result, per_second: Math.round(result.requests / seconds) };
}

export interface Replica {
  server: Server;
  internalPort: number;
}

/**
 * The change feed and the stats at scale (bench/scale.ts), through sw-status's HTTP API:
 * - feed pages from random positions in the history (plain and filtered), 4 clients and 1;
 * - stats over 24-hour windows with arbitrary edges (some by hour, some for one API);
 * - long-poll wake-up: a long-poll waits on one replica while a callback is committed through
 *   the same replica or another one; the time from the callback's acknowledgement (its commit)
 *   to the long-poll's answer.
 */
export async function feedAndStatsLatency(
  url: string,
  primary: Replica & { env: Record<string, string> },
  other: Replica,
) {
  const headers = { Authorization: `Bearer ${BENCH_API_TOKEN}` };
  const cursors = feedCursors([primary.env.CALLBACK_TOKEN_SECRET!]);
  const { positions, until } = await withClient(url, async (client) => {
    const sampled = await client.query<{ tx: string; seq: string }>(
      'SELECT tx::text AS tx, seq FROM status_events TABLESAMPLE SYSTEM (0.1) LIMIT 2000',
    );
    const newest = await client.query<{ at: Date }>('SELECT max(created_at) AS at FROM messages');
    return {
      positions: sampled.rows.map((row) => ({ tx: row.tx, seq: Number(row.seq) })),
      until: newest.rows[0]!.at.getTime(),
    };
  });
  const shuffle = <T>(values: T[]) => values.sort(() => Math.random() - 0.5);
  const feedPaths = shuffle([
    ...positions.slice(0, 600).map((p) => `/v1/events?after=${cursors.encode(p)}&limit=100`),
    ...positions
      .slice(600, 800)
      .map((p) => `/v1/events?after=${cursors.encode(p)}&limit=100&status=failed,undelivered`),
    ...Array.from({ length: 50 }, () => '/v1/events?limit=100'),
  ]);
  // Other positions, read before the store is warm: what a consumer catching up from an old
  // cursor meets right after PostgreSQL started (pages from disk or the OS cache). Reported.
  const coldPaths = positions
    .slice(1000, 1850)
    .map((p) => `/v1/events?after=${cursors.encode(p)}&limit=100`);
  const feedPagesCold = await measureGets(primary.internalPort, coldPaths, 1, headers);
  // Then as on a server that has run: the history in the OS cache and the feed's index in
  // shared_buffers (bench:scale restarts PostgreSQL, and an earlier program may have pushed the
  // store out of the OS cache). The targets are judged warm, on the positions above.
  const warmup = await warmFeed(url);
  await measureGets(primary.internalPort, feedPaths.slice(0, 100), 4, headers);
  const feedPagesAlone = await measureGets(primary.internalPort, feedPaths, 1, headers);
  const feedPagesFour = await measureGetsAtRate(
    primary.internalPort,
    feedPaths,
    4,
    FEED_PAGES_PER_SECOND,
    headers,
  );
  const feedPagesSaturated = await saturated(primary.internalPort, feedPaths, headers);

  const HOUR = 3_600_000;
  const statsPaths = shuffle(
    Array.from({ length: 200 }, (_, i) => {
      const end = until - Math.floor(Math.random() * HOUR);
      const window = `created_since=${new Date(end - 24 * HOUR).toISOString()}&created_until=${new Date(end).toISOString()}`;
      return `/v1/stats?${window}${i % 4 === 1 ? '&bucket=hour' : ''}${i % 4 === 2 ? '&api=native' : ''}`;
    }),
  );
  await measureGets(primary.internalPort, statsPaths.slice(0, 20), 4, headers);
  const statsAlone = await measureGets(primary.internalPort, statsPaths, 1, headers);
  const statsFour = await measureGetsAtRate(
    primary.internalPort,
    statsPaths,
    4,
    STATS_PER_SECOND,
    headers,
  );
  const statsSaturated = await saturated(primary.internalPort, statsPaths, headers);

  const wakeSame = await wakeUps(primary, primary, 100);
  const wakeOther = await wakeUps(primary, other, 100);
  return {
    feed_pages_cold: feedPagesCold,
    feed_warmup_seconds: warmup,
    feed_pages_alone: feedPagesAlone,
    feed_pages: feedPagesFour,
    feed_pages_saturated: feedPagesSaturated,
    stats_24h_alone: statsAlone,
    stats_24h: statsFour,
    stats_24h_saturated: statsSaturated,
    wake_same_replica: wakeSame,
    wake_other_replica: wakeOther,
  };
}

/** Reads status_events once in heap order and its feed index in full; returns the seconds. */
async function warmFeed(url: string): Promise<number> {
  const started = performance.now();
  await withClient(url, async (client) => {
    await client.query('SELECT count(*) FROM status_events');
    // In index order through the index itself, not a sequential scan and a sort.
    await client.query('SET enable_seqscan = off');
    await client.query(
      'SELECT count(*) FROM (SELECT tx, seq FROM status_events ORDER BY tx, seq) feed_order',
    );
  });
  return Math.round((performance.now() - started) / 100) / 10;
}

/** `count` times: a long-poll on `poller`, then one callback through `writer`. */
async function wakeUps(writer: Replica, poller: Replica, count: number): Promise<LatencyResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const latencies: number[] = [];
  let failures = 0;
  for (let i = 0; i < count; i++) {
    const now = JSON.parse(
      (await request(agent, poller.internalPort, 'GET', '/v1/events?after=now')).body,
    ) as { next_cursor: string };
    const poll = request(
      agent,
      poller.internalPort,
      'GET',
      `/v1/events?after=${now.next_cursor}&wait=10`,
    ).then((res) => ({ ...res, at: performance.now() }));
    await new Promise((resolve) => setTimeout(resolve, 30));
    const fields: Array<[string, string]> = [
      ['MessageSid', randomUUID()],
      ['MessageStatus', 'delivered'],
      ['From', '+15551234567'],
      ['To', '+15557654321'],
    ];
    const signature = signFormParams(
      BENCH_SIGNING_KEY,
      BENCH_PUBLIC_BASE_URL + CALLBACK_PATH,
      fields,
    );
    const callback = await request(agent, writer.server.port, 'POST', CALLBACK_PATH, {
      body: new URLSearchParams(fields).toString(),
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        'X-SignalWire-Signature': signature,
      },
    });
    const acknowledged = performance.now();
    const answered = await poll;
    const data = (JSON.parse(answered.body) as { data: unknown[] }).data;
    if (callback.status !== 200 || answered.status !== 200 || data.length === 0) failures++;
    // The answer can even come before the acknowledgement reaches this process.
    latencies.push(Math.max(0, answered.at - acknowledged));
  }
  agent.destroy();
  return latencyResult(latencies, failures);
}

function request(
  agent: http.Agent,
  port: number,
  method: string,
  path: string,
  { body, headers = {} }: { body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent,
        headers: { Authorization: `Bearer ${BENCH_API_TOKEN}`, ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
