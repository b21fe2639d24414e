import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import type { CompiledQuery } from 'kysely';
import { Pool } from 'pg';
import type { Database } from '../src/db/database';
import { freePort } from '../src/db/free-port';
import { readFeedPage } from '../src/feed/feed.repository';
import { findMessageWithHistory, listMessages } from '../src/messages/messages.repository';
import { readEdges, readRollups } from '../src/stats/stats.repository';
import { planWindow } from '../src/stats/stats-summary';
import { withDatabase } from '../src/db/database';
import { settlePostgres, withClient } from './lib/database';
import { feedAndStatsLatency } from './lib/feed-latency';
import { measureGets } from './lib/http-latency';
import type { LatencyResult } from './lib/http-latency';
import { peak } from './lib/load';
import { median } from './lib/median';
import { startServer } from './lib/processes';
import type { Server } from './lib/processes';
import { writeRequestPool } from './lib/request-pool';
import { migrate, openScaleStore, recreate } from './lib/scale-store';
import { BENCH_API_TOKEN, swStatusEnv } from './lib/sw-status';

/**
 * `npm run bench:scale`: the store at 10 million status events.
 *  1. Loads SCALE_EVENTS (10 000 000) events with scripts/generate-events.ts (COPY), unless
 *     the database already holds them (the data directory is kept for the next run).
 *  2. Query latency through sw-status's internal listener (HTTP, auth, JSON):
 *     GET /v1/messages/:id for random messages (target p99 < 5 ms) and filtered list pages,
 *     first pages and cursor pages (target p99 < 20 ms); 4 concurrent clients.
 *  3. EXPLAIN (ANALYZE, BUFFERS) of the repository's own SQL.
 *  3b. The change feed and the stats (bench/lib/feed-latency.ts): feed pages from random
 *     positions (target p99 < 10 ms; measured once the store is warm — read once, as on a
 *     server that has run — and, for information, before), stats over 24 h (p99 < 50 ms) — for one client, and for
 *     four clients polling together at a stated rate (open loop); four clients in a closed
 *     loop give the most the replica answers per second (reported, not a target) — and the
 *     long-poll wake-up when a callback commits on the same replica or another one (p99 < 100 ms).
 *  4. Ingest rate (the full path, as in `npm run bench`) into the 10 M database vs an empty
 *     one, alternating, 3 runs each after a warmup of SCALE_WARMUP_SECONDS (target: within
 *     10 %), with the WAL, full-page images and blocks read per event.
 * PostgreSQL runs with BENCH_POSTGRES_SETTINGS (bench/lib/database.ts).
 * Env: BENCH_DATABASE_URL (else an embedded PostgreSQL in .data/scale-postgres),
 * SCALE_EVENTS, BENCH_SECONDS (10), SCALE_WARMUP_SECONDS (30).
 */

const EVENTS = Number(process.env.SCALE_EVENTS ?? 10_000_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
// A service that has run at 10 M events has its index pages in memory and, mostly, changed
// since the last checkpoint. Freshly started, every first change of a random index page costs
// a read and a full-page image in the WAL (seen after a 3 s warmup: 2.6 images and 19 kB of
// WAL per event, against 2 kB in steady state): the warmup runs until that has passed.
const WARMUP_SECONDS = Number(process.env.SCALE_WARMUP_SECONDS ?? 30);
const EMPTY_DB = 'sw_status_scale_empty';
const RESULTS = path.join(__dirname, 'results');

async function main(): Promise<void> {
  const started = Date.now();
  const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-scale-'));
  const store = await openScaleStore(EVENTS, log);
  const { adminUrl, url: fullUrl, load } = store;
  try {
    const sizes = await tableSizes(fullUrl);
    log(`store: ${JSON.stringify(sizes)}`);
    await settlePostgres(adminUrl);

    const queries = await withSwStatus(fullUrl, work, (server, internalPort) =>
      queryLatency(fullUrl, internalPort),
    );
    const feed = await withSwStatus(fullUrl, work, (server, internalPort, env) =>
      withSwStatus(
        fullUrl,
        work,
        (other, otherPort) =>
          feedAndStatsLatency(
            fullUrl,
            { server, internalPort, env },
            { server: other, internalPort: otherPort },
          ),
        env,
      ),
    );
    log(
      `feed page p99 before warming (other positions, one client): ${feed.feed_pages_cold.p99_ms} ms; warmed in ${feed.feed_warmup_seconds} s`,
    );
    log(
      `feed page p99: alone ${feed.feed_pages_alone.p99_ms} ms, 4 clients at ${feed.feed_pages.rate_per_second}/s ${feed.feed_pages.p99_ms} ms; saturated (4 in a closed loop) ${feed.feed_pages_saturated.per_second}/s at p99 ${feed.feed_pages_saturated.p99_ms} ms`,
    );
    log(
      `stats 24 h p99: alone ${feed.stats_24h_alone.p99_ms} ms, 4 clients at ${feed.stats_24h.rate_per_second}/s ${feed.stats_24h.p99_ms} ms; saturated ${feed.stats_24h_saturated.per_second}/s at p99 ${feed.stats_24h_saturated.p99_ms} ms`,
    );
    log(
      `long-poll wake-up: same replica p99 ${feed.wake_same_replica.p99_ms} ms, other replica p99 ${feed.wake_other_replica.p99_ms} ms`,
    );
    const plans = await explainPlans(fullUrl);
    for (const plan of plans) log(`plan ${plan.name}: ${plan.summary}`);

    await recreate(adminUrl, EMPTY_DB);
    const emptyUrl = withDatabase(adminUrl, EMPTY_DB);
    await migrate(emptyUrl);
    // What the ingest runs add to the 10 M store is removed afterwards, so it stays 10 M.
    const mark = await ingestMark(fullUrl);
    const ingest = { empty: [] as number[], full: [] as number[] };
    const writeCost: Record<'empty' | 'full', WriteCost[]> = { empty: [], full: [] };
    try {
      for (let run = 0; run < 3; run++) {
        for (const [which, url] of [
          ['empty', emptyUrl],
          ['full', fullUrl],
        ] as const) {
          const { rps, cost } = await withSwStatus(url, work, async (server) => {
            const warmup = path.join(work, 'warmup.pool');
            const measure = path.join(work, 'measure.pool');
            await writeRequestPool(warmup, WARMUP_SECONDS * 20_000);
            await writeRequestPool(measure, SECONDS * 20_000);
            await peak(server.port, warmup, WARMUP_SECONDS, 32);
            const before = await writeCounters(url);
            const result = await peak(server.port, measure, SECONDS, 32);
            if (result.failures > 0) throw new Error(`${result.failures} failed requests`);
            return {
              rps: result.rps,
              cost: perEvent(before, await writeCounters(url), result.requests),
            };
          });
          ingest[which].push(rps);
          writeCost[which].push(cost);
          log(`ingest into the ${which} store: ${rps} req/s; per event ${JSON.stringify(cost)}`);
        }
      }
    } finally {
      await removeIngested(fullUrl, mark);
    }
    const ingestRatio = Math.round((median(ingest.full) / median(ingest.empty)) * 100) / 100;

    const results = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model },
      postgres: process.env.BENCH_DATABASE_URL ? 'BENCH_DATABASE_URL' : 'embedded',
      load,
      sizes,
      queries,
      feed,
      ingest: {
        ...ingest,
        write_cost_per_event: writeCost,
        median_empty: median(ingest.empty),
        median_full: median(ingest.full),
        full_over_empty: ingestRatio,
      },
      plans,
      targets: {
        'GET /v1/messages/:id p99 < 5 ms (4 clients)': queries.by_id.p99_ms < 5,
        'GET /v1/messages/:id p99 < 5 ms (1 client)': queries.alone.by_id.p99_ms < 5,
        'list page p99 < 20 ms (4 clients)': queries.list_all.p99_ms < 20,
        'list page p99 < 20 ms (1 client)': queries.alone.list_all.p99_ms < 20,
        'ingest at 10 M within 10 % of empty': ingestRatio >= 0.9,
        'feed page p99 < 10 ms (1 client)': feed.feed_pages_alone.p99_ms < 10,
        'feed page p99 < 10 ms (4 clients, 160 pages/s)': feed.feed_pages.p99_ms < 10,
        'stats over 24 h p99 < 50 ms (1 client)': feed.stats_24h_alone.p99_ms < 50,
        'stats over 24 h p99 < 50 ms (4 clients, 8/s)': feed.stats_24h.p99_ms < 50,
        'long-poll wake-up p99 < 100 ms (other replica)':
          feed.wake_other_replica.failures === 0 && feed.wake_other_replica.p99_ms < 100,
      },
      elapsed_seconds: Math.round((Date.now() - started) / 1000),
    };
    mkdirSync(RESULTS, { recursive: true });
    const file = path.join(RESULTS, `scale-${results.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    log('');
    log(`${queries.concurrency} clients:`);
    log(`GET /v1/messages/:id  p50 ${queries.by_id.p50_ms} ms  p99 ${queries.by_id.p99_ms} ms`);
    for (const [name, result] of Object.entries(queries.lists)) {
      log(`list ${name.padEnd(28)} p50 ${result.p50_ms} ms  p99 ${result.p99_ms} ms`);
    }
    log(
      `list pages overall    p50 ${queries.list_all.p50_ms} ms  p99 ${queries.list_all.p99_ms} ms`,
    );
    log(
      `one client alone: by id p50 ${queries.alone.by_id.p50_ms} ms p99 ${queries.alone.by_id.p99_ms} ms; ` +
        `list p50 ${queries.alone.list_all.p50_ms} ms p99 ${queries.alone.list_all.p99_ms} ms`,
    );
    log(
      `ingest median: empty ${results.ingest.median_empty}/s, 10 M ${results.ingest.median_full}/s → ${ingestRatio}`,
    );
    for (const [target, met] of Object.entries(results.targets))
      log(`${met ? 'met    ' : 'NOT MET'}  ${target}`);
    log(`written: ${path.relative(process.cwd(), file)} (${results.elapsed_seconds} s)`);
  } catch (error) {
    // Reported before the server below stops (which would end idle sessions noisily).
    console.error(error);
    process.exitCode = 1;
  } finally {
    await store.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Latency with `concurrency` dashboards polling at once, and with one alone. */
async function queryLatency(url: string, internalPort: number, concurrency = 4) {
  const pool = new Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  // A random sample of about 10 000 messages, whatever the table's size.
  const { rows: counted } = await pool.query<{ n: number }>(
    `SELECT reltuples AS n FROM pg_class WHERE relname = 'messages'`,
  );
  const percent = Math.min(100, (10_000 / Math.max(1, counted[0]!.n)) * 100);
  const sample = (
    await pool.query<{ id: string; to: string }>(
      `SELECT id, "to" FROM messages TABLESAMPLE BERNOULLI (${percent}) LIMIT 10000`,
    )
  ).rows;
  const ids = sample.slice(0, 4000).map((row) => row.id);
  const recipients = sample.slice(4000, 4200).map((row) => row.to);
  await pool.end();
  const headers = { Authorization: `Bearer ${BENCH_API_TOKEN}` };
  const shuffle = <T>(values: T[]) => values.sort(() => Math.random() - 0.5);

  // Warm the page cache the way a running service's would be.
  await measureGets(
    internalPort,
    ids.slice(0, 1000).map((id) => `/v1/messages/${id}`),
    4,
    headers,
  );
  const byIdPaths = ids.map((id) => `/v1/messages/${id}`);
  const byId = await measureGets(internalPort, shuffle(byIdPaths), concurrency, headers);
  const byIdAlone = await measureGets(internalPort, shuffle(byIdPaths), 1, headers);

  const day = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString();
  const filters: Record<string, (i: number) => string> = {
    'newest (no filter)': () => '',
    'status=undelivered': () => 'status=undelivered',
    'status=delivered': () => 'status=delivered',
    'to=<recipient>': (i) => `to=${encodeURIComponent(recipients[i % recipients.length]!)}`,
    'from=<sender>': (i) =>
      `from=${encodeURIComponent(`+1555010${String(i % 50).padStart(4, '0')}`)}`,
    'error_code=30003': () => 'error_code=30003',
    'api=native&status=failed': () => 'api=native&status=failed',
    'since..until (one day)': (i) => `since=${day(1 + (i % 28))}&until=${day(i % 28)}`,
  };
  const lists: Record<string, LatencyResult> = {};
  const allPaths: string[] = [];
  for (const [name, query] of Object.entries(filters)) {
    const paths = Array.from({ length: 300 }, (_, i) => `/v1/messages?${query(i)}&limit=50`);
    // Deeper pages: follow next_cursor from a first page.
    paths.push(
      ...(await cursorPages(internalPort, `/v1/messages?${query(0)}&limit=50`, 100, headers)),
    );
    await measureGets(internalPort, paths.slice(0, 50), 4, headers);
    lists[name] = await measureGets(internalPort, shuffle([...paths]), concurrency, headers);
    allPaths.push(...paths);
  }
  const listAll = await measureGets(internalPort, shuffle(allPaths), concurrency, headers);
  const listAllAlone = await measureGets(internalPort, shuffle(allPaths), 1, headers);
  return {
    concurrency,
    by_id: byId,
    lists,
    list_all: listAll,
    // One client at a time: the request's own latency, without queueing behind others.
    alone: { by_id: byIdAlone, list_all: listAllAlone },
  };
}

/** The paths of the next `count` pages after `first`, by following next_cursor. */
async function cursorPages(
  port: number,
  first: string,
  count: number,
  headers: Record<string, string>,
): Promise<string[]> {
  const paths: string[] = [];
  let path = first;
  for (let i = 0; i < count; i++) {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
    const body = (await res.json()) as { next_cursor: string | null };
    if (!body.next_cursor) break;
    path = `${first}&cursor=${encodeURIComponent(body.next_cursor)}`;
    paths.push(path);
  }
  return paths;
}

interface Plan {
  name: string;
  summary: string;
  plan: string;
}

/** The repository's own SQL (captured from kysely), explained with real parameters. */
async function explainPlans(url: string): Promise<Plan[]> {
  const pool = new Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  // Each case's statements; the one to explain is its last that is not BEGIN, COMMIT or a SET
  // (whose settings, such as stats' parallel workers off, apply to the explained statement).
  let captured: CompiledQuery[] = [];
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      captured.push(event.query);
    },
  });
  const sample = await pool.query<{ id: string; to: string; last_event_at: Date }>(
    `SELECT id, "to", last_event_at FROM messages WHERE id >= gen_random_uuid()::text ORDER BY id LIMIT 1`,
  );
  const { id, to, last_event_at: lastEventAt } = sample.rows[0]!;
  const position = (
    await pool.query<{ tx: string; seq: string }>(
      `SELECT tx::text AS tx, seq FROM status_events
        WHERE seq >= (SELECT max(seq) / 2 FROM status_events) ORDER BY seq LIMIT 1`,
    )
  ).rows.map((row) => ({ tx: row.tx, seq: Number(row.seq) }))[0]!;
  const newest = (
    await pool.query<{ at: Date }>('SELECT max(created_at) AS at FROM messages')
  ).rows[0]!.at.getTime();
  const day = planWindow(newest - 86_400_000 - 1234, newest - 1234);
  const cases: Array<[string, () => Promise<unknown>]> = [
    ['message with its history, by id', () => findMessageWithHistory(db, id)],
    ['list newest', () => listMessages(db, {}, 51)],
    ['list status=undelivered', () => listMessages(db, { statuses: ['undelivered'] }, 51)],
    ['list to=<recipient>', () => listMessages(db, { to: [to] }, 51)],
    ['list error_code=30003', () => listMessages(db, { errorCodes: ['30003'] }, 51)],
    [
      'list api=native&status=failed',
      () => listMessages(db, { apis: ['native'], statuses: ['failed'] }, 51),
    ],
    [
      'list status=delivered, cursor page',
      () => listMessages(db, { statuses: ['delivered'] }, 51, { after: { at: lastEventAt, id } }),
    ],
    [
      'list since..until one day',
      () =>
        listMessages(
          db,
          {
            since: new Date(Date.now() - 2 * 86_400_000),
            until: new Date(Date.now() - 86_400_000),
          },
          51,
        ),
    ],
  ];
  cases.push(
    ['feed page after a position', () => readFeedPage(db, position, {}, 100, 100)],
    [
      'feed page, status=failed,undelivered',
      () => readFeedPage(db, position, { statuses: ['failed', 'undelivered'] }, 100, 500),
    ],
    ['stats rollups, 24 h', () => readRollups(db, day, {})],
    ['stats rollups with an hourly series, 24 h', () => readRollups(db, day, { bucket: 'hour' })],
    ['stats edge part-minutes, 24 h', () => readEdges(db, day.edges, {})],
  );
  const plans: Plan[] = [];
  const control = /^\s*(begin|commit|rollback)\b/i;
  for (const [name, run] of cases) {
    captured = [];
    await run();
    const statements = captured.filter((query) => !control.test(query.sql));
    const settings = statements.filter((query) => /^\s*set\b/i.test(query.sql));
    const query = statements.filter((query) => !settings.includes(query)).at(-1)!;
    const client = await pool.connect();
    let rows: Array<{ 'QUERY PLAN': string }>;
    try {
      await client.query('BEGIN');
      for (const setting of settings) await client.query(setting.sql);
      ({ rows } = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (ANALYZE, BUFFERS) ${query.sql}`,
        query.parameters as unknown[],
      ));
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
    plans.push({ name, summary: summarize(plan), plan });
  }
  await db.destroy();
  return plans;
}

/** Scan types with their index, whether anything is sorted, buffers and execution time. */
function summarize(plan: string): string {
  const scans = [
    ...plan.matchAll(
      /(Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)(?: Backward)? (?:using (\S+) )?on (\S+)/g,
    ),
  ].map((m) => `${m[1]}${m[2] ? ` ${m[2]}` : ` ${m[3]}`}`);
  const sort = /\bSort\b/.test(plan) ? ', sort' : '';
  const buffers = /Buffers: ([^\n]+)/.exec(plan)?.[1] ?? '';
  const time = /Execution Time: ([\d.]+) ms/.exec(plan)?.[1];
  return `${[...new Set(scans)].join(' + ')}${sort}; ${buffers}; ${time} ms`;
}

async function withSwStatus<T>(
  url: string,
  work: string,
  body: (server: Server, internalPort: number, env: Record<string, string>) => Promise<T>,
  env?: Record<string, string>,
): Promise<T> {
  const internalPort = await freePort();
  const spool = mkdtempSync(path.join(work, 'spool-'));
  // A second replica on the same database gets the first one's secrets (as in production).
  const serverEnv = {
    ...swStatusEnv(url, internalPort, spool),
    ...env,
    INTERNAL_PORT: String(internalPort),
    SPOOL_DIR: spool,
  };
  const server = await startServer('src/main.ts', await freePort(), serverEnv);
  try {
    return await body(server, internalPort, serverEnv);
  } finally {
    await server.stop();
  }
}

interface WriteCounters {
  walRecords: number;
  walFpi: number;
  walBytes: number;
  blocksRead: number;
}

interface WriteCost {
  wal_records: number;
  full_page_images: number;
  wal_bytes: number;
  blocks_read: number;
}

/**
 * WAL (cluster-wide: run nothing else on the server) and buffer misses of the two tables: at
 * scale, random keys (provider UUIDs, SHA-256 dedupe keys) make most index pages an insert
 * touches both uncached and untouched since the last checkpoint, which costs a read and a
 * full-page image in the WAL.
 */
async function writeCounters(url: string): Promise<WriteCounters> {
  return withClient(url, async (client) => {
    const wal = await client.query<{ wal_records: string; wal_fpi: string; wal_bytes: string }>(
      'SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal',
    );
    const io = await client.query<{ read: string }>(
      `SELECT sum(heap_blks_read + coalesce(idx_blks_read, 0)) AS read FROM pg_statio_user_tables`,
    );
    return {
      walRecords: Number(wal.rows[0]!.wal_records),
      walFpi: Number(wal.rows[0]!.wal_fpi),
      walBytes: Number(wal.rows[0]!.wal_bytes),
      blocksRead: Number(io.rows[0]!.read),
    };
  });
}

function perEvent(before: WriteCounters, after: WriteCounters, events: number): WriteCost {
  const per = (a: number, b: number) => Math.round(((b - a) / events) * 100) / 100;
  return {
    wal_records: per(before.walRecords, after.walRecords),
    full_page_images: per(before.walFpi, after.walFpi),
    wal_bytes: Math.round((after.walBytes - before.walBytes) / events),
    blocks_read: per(before.blocksRead, after.blocksRead),
  };
}

async function tableSizes(url: string) {
  const { rows } = await withClient(url, (client) =>
    client.query<{ table: string; rows: string; total: string; indexes: string }>(`
      SELECT relname AS table, reltuples::bigint AS rows,
             pg_size_pretty(pg_total_relation_size(oid)) AS total,
             pg_size_pretty(pg_indexes_size(oid)) AS indexes
        FROM pg_class WHERE relname IN ('messages', 'status_events') ORDER BY 1`),
  );
  return Object.fromEntries(
    rows.map((row) => [
      row.table,
      { rows: Number(row.rows), total: row.total, indexes: row.indexes },
    ]),
  );
}

interface IngestMark {
  maxSeq: number;
  at: Date;
}

async function ingestMark(url: string): Promise<IngestMark> {
  const { rows } = await withClient(url, (client) =>
    client.query<{ max_seq: number; at: Date }>(
      'SELECT coalesce(max(seq), 0)::bigint AS max_seq, now() AS at FROM status_events',
    ),
  );
  return { maxSeq: Number(rows[0]!.max_seq), at: rows[0]!.at };
}

/** The benchmark's callbacks create new messages only: later events, newer messages. */
async function removeIngested(url: string, mark: IngestMark): Promise<void> {
  await withClient(url, async (client) => {
    await client.query('DELETE FROM status_events WHERE seq > $1', [mark.maxSeq]);
    await client.query('DELETE FROM messages WHERE created_at >= $1', [mark.at]);
    await client.query('VACUUM (ANALYZE) messages, status_events');
  });
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
