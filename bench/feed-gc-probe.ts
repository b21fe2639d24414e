import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../src/db/free-port';
import { feedCursors } from '../src/feed/feed-cursor';
import { settlePostgres, withClient } from './lib/database';
import { latencyResult, measureGets, measureGetsAtRate } from './lib/http-latency';
import type { LatencyDetail, LatencyResult } from './lib/http-latency';
import { busyBetween, machineCpu } from './lib/machine-cpu';
import { postgresCpuSeconds, postmasterPid } from './lib/postgres-cpu';
import { openScaleStore } from './lib/scale-store';
import { BENCH_API_TOKEN, swStatusEnv } from './lib/sw-status';

/**
 * `tsx bench/feed-gc-probe.ts`: the change feed's page latency and the server's GC pauses
 * meanwhile, alone — what bench:scale measures for the feed (bench/lib/feed-latency.ts), in a
 * minute instead of the whole scale run, to try a change or a V8 flag.
 *
 * Uses bench:scale's store (.data/scale-postgres, database sw_status_scale_<SCALE_EVENTS>),
 * loading it first if it is not there. Then, for each server in PROBE_SERVERS (checkout
 * directories, default this one; several are measured alternately, round after round):
 * starts src/main.ts with PROBE_NODE_FLAGS, warms it, and measures PROBE_PAGES pages from
 * random positions (as bench:scale: a quarter filtered) with one client, then with four
 * clients at 160 pages/s (open loop). Every GC pause of the server is recorded
 * (bench/lib/gc-recorder.ts) and summarised per phase.
 *
 * Each phase also says where its tail came from: latency by kind of page, the server's own
 * time per page (its debug request log), the client's and the server's event-loop delay, the
 * machine's CPU and what PostgreSQL did in the background, and the slowest requests with the
 * server GC pauses that overlapped them. The server's stdout (its log; where V8's --trace-gc*
 * flags write) goes to PROBE_SERVER_STDOUT when set, else to a temporary file; with
 * PROBE_SAMPLES_FILE every request's latency is written out too.
 *
 * Env: BENCH_DATABASE_URL (else the embedded one), SCALE_EVENTS (1 000 000), PROBE_ROUNDS (3),
 * PROBE_PAGES (2 000), PROBE_NODE_FLAGS, PROBE_SERVERS (comma-separated directories),
 * PROBE_SERVER_STDOUT, PROBE_SAMPLES_FILE; with bench/lib/heap-sampler.ts preloaded, its HEAP_*
 * settings.
 */

const EVENTS = Number(process.env.SCALE_EVENTS ?? 1_000_000);
const ROUNDS = Number(process.env.PROBE_ROUNDS ?? 3);
const PAGES = Number(process.env.PROBE_PAGES ?? 2_000);
const NODE_FLAGS = (process.env.PROBE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const SERVERS = (process.env.PROBE_SERVERS ?? process.cwd()).split(',').map((dir) => dir.trim());
const FEED_PAGES_PER_SECOND = 160;
const RECORDER = path.resolve(__dirname, 'lib', 'gc-recorder.ts');

interface Pause {
  at: number;
  kind: string;
  ms: number;
}

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-feed-gc-'));
  const store = await openScaleStore(EVENTS, log);
  const { url } = store;
  try {
    // As bench:scale does: a freshly loaded store is vacuumed by autovacuum for a while.
    await settlePostgres(store.adminUrl);
    const secret = 'feed-gc-probe-secret-0123456789abcdef';
    const paths = await feedPaths(url, secret);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const dir of SERVERS) {
        const result = await measureServer(dir, url, secret, paths, work);
        log(`round ${round} ${dir} ${NODE_FLAGS.join(' ')}`);
        for (const [phase, { latency, gc, diagnosis }] of Object.entries(result)) {
          log(
            `  ${phase.padEnd(6)} p50 ${latency.p50_ms} p90 ${latency.p90_ms} p99 ${latency.p99_ms} max ${latency.max_ms} ms (${latency.requests}, ${latency.failures} failed)` +
              ` | minor GC ${gc.minor.count}× p50 ${gc.minor.p50} p90 ${gc.minor.p90} max ${gc.minor.max} ms, every ${gc.minor.every_ms} ms; other ${gc.other}`,
          );
          for (const line of diagnosis) log(`         ${line}`);
        }
      }
    }
  } finally {
    await store.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Random positions as bench:scale takes them: 3/4 plain pages, 1/4 filtered, a few heads. */
async function feedPaths(url: string, secret: string): Promise<string[]> {
  const cursors = feedCursors([secret]);
  const sampled = await withClient(url, (client) =>
    client.query<{ tx: string; seq: string }>(
      `SELECT tx::text AS tx, seq FROM status_events TABLESAMPLE SYSTEM (1) LIMIT ${PAGES}`,
    ),
  );
  const positions = sampled.rows.map((row) => cursors.encode({ tx: row.tx, seq: Number(row.seq) }));
  return positions
    .map((cursor, i) =>
      i % 16 === 0
        ? '/v1/events?limit=100'
        : i % 4 === 1
          ? `/v1/events?after=${cursor}&limit=100&status=failed,undelivered`
          : `/v1/events?after=${cursor}&limit=100`,
    )
    .sort(() => Math.random() - 0.5);
}

async function measureServer(
  dir: string,
  url: string,
  secret: string,
  paths: string[],
  work: string,
): Promise<
  Record<
    'alone' | 'four',
    { latency: LatencyResult; gc: ReturnType<typeof summarise>; diagnosis: string[] }
  >
> {
  const gcFile = path.join(work, `gc-${Date.now()}.jsonl`);
  const internalPort = await freePort();
  const spool = mkdtempSync(path.join(work, 'spool-'));
  const env = {
    ...swStatusEnv(url, internalPort, spool),
    CALLBACK_TOKEN_SECRET: secret,
    GC_RECORD_FILE: gcFile,
    // A line per request with the server's own time for it (src/http/request-log.ts).
    LOG_LEVEL: 'debug',
  };
  const serverLog = process.env.PROBE_SERVER_STDOUT ?? path.join(work, `server-${Date.now()}.log`);
  const server = await startServer(dir, env, internalPort, serverLog);
  const headers = { Authorization: `Bearer ${BENCH_API_TOKEN}` };
  try {
    await measureGets(internalPort, paths.slice(0, 300), 4, headers);
    let aloneDetail: LatencyDetail | undefined;
    let fourDetail: LatencyDetail | undefined;
    const aloneBackground = await backgroundWork(url);
    await serverLoopLagMax(internalPort, headers); // starts the server's lag window afresh
    const aloneStart = Date.now();
    const alone = await measureGets(internalPort, paths, 1, headers, (d) => (aloneDetail = d));
    const aloneEnd = Date.now();
    const aloneLag = await serverLoopLagMax(internalPort, headers);
    const aloneWork = (await backgroundWork(url)).since(aloneBackground);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const fourBackground = await backgroundWork(url);
    await serverLoopLagMax(internalPort, headers);
    const fourStart = Date.now();
    const four = await measureGetsAtRate(
      internalPort,
      paths,
      4,
      FEED_PAGES_PER_SECOND,
      headers,
      (d) => (fourDetail = d),
    );
    const fourEnd = Date.now();
    const fourLag = await serverLoopLagMax(internalPort, headers);
    const fourWork = (await backgroundWork(url)).since(fourBackground);
    await server.stop();
    const pauses = readFileSync(gcFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Pause);
    const within = (from: number, to: number) => pauses.filter((p) => p.at >= from && p.at <= to);
    const served = serverTimes(serverLog);
    writeSamples({ alone: aloneDetail!, four: fourDetail! });
    return {
      alone: {
        latency: alone,
        gc: summarise(within(aloneStart, aloneEnd), aloneEnd - aloneStart),
        diagnosis: diagnose(
          aloneDetail!,
          pauses,
          aloneLag,
          aloneWork,
          served(aloneStart, aloneEnd),
        ),
      },
      four: {
        latency: four,
        gc: summarise(within(fourStart, fourEnd), fourEnd - fourStart),
        diagnosis: diagnose(fourDetail!, pauses, fourLag, fourWork, served(fourStart, fourEnd)),
      },
    };
  } finally {
    await server.stop();
  }
}

/**
 * PROBE_SAMPLES_FILE: every request of the round appended as JSON lines (phase, path, at, ms),
 * to set beside the server's own request log (its stdout: PROBE_SERVER_STDOUT) and tell time
 * spent in the server from time spent getting to it.
 */
function writeSamples(details: Record<string, LatencyDetail>): void {
  const file = process.env.PROBE_SAMPLES_FILE;
  if (!file) return;
  const lines = Object.entries(details).flatMap(([phase, detail]) =>
    detail.samples.map((sample) => JSON.stringify({ phase, ...sample })),
  );
  appendFileSync(file, lines.join('\n') + '\n');
}

/** The kind of page a path asks for: what bench:scale mixes. */
function pageKind(path: string): 'head' | 'filtered' | 'plain' {
  if (!path.includes('after=')) return 'head';
  return path.includes('status=') ? 'filtered' : 'plain';
}

/**
 * Where a phase's tail came from: latency by kind of page; the client's and the server's own
 * event-loop delay (a stall of either side looks like a slow answer); what PostgreSQL did in
 * the background meanwhile; and the slowest requests, each with the server GC pauses that
 * overlapped it.
 */
function diagnose(
  detail: LatencyDetail,
  pauses: Pause[],
  serverLagMaxMs: number | null,
  background: string,
  served: number[],
): string[] {
  const byKind = new Map<string, number[]>();
  for (const sample of detail.samples) {
    const kind = pageKind(sample.path);
    byKind.set(kind, [...(byKind.get(kind) ?? []), sample.ms]);
  }
  const kinds = [...byKind]
    .map(([kind, ms]) => {
      const { requests, p50_ms, p99_ms } = latencyResult(ms, 0);
      return `${kind} ${requests}: p50 ${p50_ms} p99 ${p99_ms}`;
    })
    .join(' | ');
  const slowest = [...detail.samples].sort((a, b) => b.ms - a.ms).slice(0, 5);
  const own = latencyResult(served, 0);
  const lines = [
    `by kind: ${kinds}`,
    `the server's own time (request log, ${own.requests} pages): p50 ${own.p50_ms} p99 ${own.p99_ms} max ${own.max_ms} ms`,
    `client loop delay p99 ${detail.clientLoopDelay.p99_ms} max ${detail.clientLoopDelay.max_ms} ms; server loop lag max ${serverLagMaxMs ?? '?'} ms; PostgreSQL meanwhile: ${background}`,
  ];
  for (const sample of slowest) {
    const overlapping = pauses.filter(
      (p) => p.at + p.ms >= sample.at && p.at <= sample.at + sample.ms,
    );
    lines.push(
      `slow ${round(sample.ms)} ms ${pageKind(sample.path)} at +${Math.round(sample.at - detail.samples[0]!.at)} ms; server GC then: ${overlapping.map((p) => `${p.kind} ${round(p.ms)}`).join(', ') || 'none'}`,
    );
  }
  return lines;
}

/**
 * The server's own time per feed page (its debug request log: from the first middleware to
 * the answer's last byte handed to the socket), for the pages finished between two instants.
 * What the client sees beyond it was spent outside the request's handling: reading and
 * parsing it, waiting for a CPU, the client itself.
 */
function serverTimes(file: string): (from: number, to: number) => number[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const pages: Array<{ at: number; ms: number }> = [];
  for (const line of lines) {
    if (!line.includes('"/v1/events"')) continue;
    const entry = JSON.parse(line) as { time: string; msg: string; ms: number };
    if (entry.msg === 'request') pages.push({ at: Date.parse(entry.time), ms: entry.ms });
  }
  return (from, to) => pages.filter((p) => p.at >= from && p.at <= to).map((p) => p.ms);
}

/**
 * prom-client's nodejs_eventloop_lag_max_seconds: the longest event-loop delay since the
 * previous scrape (its monitor is reset at every collect).
 */
async function serverLoopLagMax(
  port: number,
  headers: Record<string, string>,
): Promise<number | null> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers })).text();
  const match = /^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text);
  return match ? round(Number(match[1]) * 1000) : null;
}

/** Checkpoints and autovacuum/autoanalyze runs so far, to tell what a phase overlapped. */
async function backgroundWork(url: string) {
  // PostgreSQL 17 moved the checkpoint counters to pg_stat_checkpointer.
  const checkpoints = (version: number) =>
    version >= 170000
      ? 'SELECT num_timed + num_requested FROM pg_stat_checkpointer'
      : 'SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter';
  const { rows } = await withClient(url, async (client) => {
    const version = await client.query<{ server_version_num: string }>('SHOW server_version_num');
    return client.query<{
      checkpoints: string;
      workers: string;
      vacuums: string;
      analyzes: string;
    }>(
      `SELECT (${checkpoints(Number(version.rows[0]!.server_version_num))}) AS checkpoints,
              (SELECT count(*) FROM pg_stat_activity
               WHERE backend_type = 'autovacuum worker') AS workers,
              (SELECT sum(autovacuum_count) FROM pg_stat_all_tables) AS vacuums,
              (SELECT sum(autoanalyze_count) FROM pg_stat_all_tables) AS analyzes`,
    );
  });
  const now = {
    ...rows[0]!,
    cpu: machineCpu(),
    postgres: postgresCpuSeconds(await postmasterPid(url)),
  };
  return {
    since(before: typeof now): string {
      const diff = (key: 'checkpoints' | 'vacuums' | 'analyzes') =>
        Number(now[key]) - Number(before[key]);
      const ticks = now.cpu.total - before.cpu.total;
      const steal = Math.round((100 * (now.cpu.steal - before.cpu.steal)) / ticks);
      return (
        `machine busy ${Math.round(100 * busyBetween(before.cpu, now.cpu))} % ` +
        `(steal ${steal} %), PostgreSQL ` +
        `${round(now.postgres - before.postgres)} s CPU; ${diff('checkpoints')} checkpoints, ${diff('vacuums')} autovacuums and ` +
        `${diff('analyzes')} autoanalyzes finished, autovacuum workers running ${before.workers} → ${now.workers}`
      );
    },
    ...now,
  };
}

function summarise(pauses: Pause[], spanMs: number) {
  const minor = pauses.filter((p) => p.kind === 'minor').map((p) => p.ms);
  minor.sort((a, b) => a - b);
  const at = (q: number) => round(minor[Math.min(minor.length - 1, Math.floor(q * minor.length))]);
  const others = pauses.filter((p) => p.kind !== 'minor');
  return {
    minor: {
      count: minor.length,
      p50: at(0.5),
      p90: at(0.9),
      max: round(minor.at(-1)),
      every_ms: minor.length ? Math.round(spanMs / minor.length) : null,
    },
    other: others.map((p) => `${p.kind} ${round(p.ms)}`).join(', ') || 'none',
  };
}

function round(value: number | undefined): number {
  return Math.round((value ?? 0) * 100) / 100;
}

/** src/main.ts of the checkout in `dir`, its stdout (logs, --trace-gc) to `stdoutFile`. */
async function startServer(
  dir: string,
  env: Record<string, string>,
  internalPort: number,
  stdoutFile: string,
) {
  const stdout = openSync(stdoutFile, 'a');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', RECORDER, ...NODE_FLAGS, 'src/main.ts'],
    {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        ...heapSamplerEnv(),
        ...env,
        PORT: String(await freePort()),
      },
      stdio: ['ignore', stdout, 'pipe'],
    },
  );
  closeSync(stdout);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 60_000;
  while (!(await answers(internalPort))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the server in ${dir} did not start:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** bench/lib/heap-sampler.ts's settings (HEAP_*), when PROBE_NODE_FLAGS preloads it. */
function heapSamplerEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (entry): entry is [string, string] => entry[0].startsWith('HEAP_') && !!entry[1],
    ),
  );
}

async function answers(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
  } catch {
    return false;
  }
}

/** bench:scale's store, loaded as bench/scale.ts loads it (same database, same rows). */
function log(line: string): void {
  console.log(`[feed-gc-probe] ${line}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
