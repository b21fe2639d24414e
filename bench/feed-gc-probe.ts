import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../src/db/embedded-postgres';
import { feedCursors } from '../src/feed/feed-cursor';
import { withClient } from './lib/database';
import { measureGets, measureGetsAtRate } from './lib/http-latency';
import type { LatencyResult } from './lib/http-latency';
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
 * (bench/lib/gc-recorder.ts) and summarised per phase. The server's stdout (where V8's
 * --trace-gc* flags write) goes to PROBE_SERVER_STDOUT when set.
 *
 * Env: BENCH_DATABASE_URL (else the embedded one), SCALE_EVENTS (1 000 000), PROBE_ROUNDS (3),
 * PROBE_PAGES (2 000), PROBE_NODE_FLAGS, PROBE_SERVERS (comma-separated directories),
 * PROBE_SERVER_STDOUT; with bench/lib/heap-sampler.ts preloaded, its HEAP_* settings.
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
    const secret = 'feed-gc-probe-secret-0123456789abcdef';
    const paths = await feedPaths(url, secret);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const dir of SERVERS) {
        const result = await measureServer(dir, url, secret, paths, work);
        log(`round ${round} ${dir} ${NODE_FLAGS.join(' ')}`);
        for (const [phase, { latency, gc }] of Object.entries(result)) {
          log(
            `  ${phase.padEnd(6)} p50 ${latency.p50_ms} p90 ${latency.p90_ms} p99 ${latency.p99_ms} max ${latency.max_ms} ms (${latency.requests}, ${latency.failures} failed)` +
              ` | minor GC ${gc.minor.count}× p50 ${gc.minor.p50} p90 ${gc.minor.p90} max ${gc.minor.max} ms, every ${gc.minor.every_ms} ms; other ${gc.other}`,
          );
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
): Promise<Record<'alone' | 'four', { latency: LatencyResult; gc: ReturnType<typeof summarise> }>> {
  const gcFile = path.join(work, `gc-${Date.now()}.jsonl`);
  const internalPort = await freePort();
  const spool = mkdtempSync(path.join(work, 'spool-'));
  const env = {
    ...swStatusEnv(url, internalPort, spool),
    CALLBACK_TOKEN_SECRET: secret,
    GC_RECORD_FILE: gcFile,
  };
  const server = await startServer(dir, env, internalPort);
  const headers = { Authorization: `Bearer ${BENCH_API_TOKEN}` };
  try {
    await measureGets(internalPort, paths.slice(0, 300), 4, headers);
    const aloneStart = Date.now();
    const alone = await measureGets(internalPort, paths, 1, headers);
    const aloneEnd = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const fourStart = Date.now();
    const four = await measureGetsAtRate(internalPort, paths, 4, FEED_PAGES_PER_SECOND, headers);
    const fourEnd = Date.now();
    await server.stop();
    const pauses = readFileSync(gcFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Pause);
    const within = (from: number, to: number) => pauses.filter((p) => p.at >= from && p.at <= to);
    return {
      alone: { latency: alone, gc: summarise(within(aloneStart, aloneEnd), aloneEnd - aloneStart) },
      four: { latency: four, gc: summarise(within(fourStart, fourEnd), fourEnd - fourStart) },
    };
  } finally {
    await server.stop();
  }
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

/** src/main.ts of the checkout in `dir`, its stdout to PROBE_SERVER_STDOUT (or nowhere). */
async function startServer(dir: string, env: Record<string, string>, internalPort: number) {
  const stdoutFile = process.env.PROBE_SERVER_STDOUT;
  const stdout = stdoutFile ? openSync(stdoutFile, 'a') : 'ignore';
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
  if (typeof stdout === 'number') closeSync(stdout);
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
