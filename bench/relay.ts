import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createDb } from '../src/db/database';
import { freePort } from '../src/db/free-port';
import { migrateToLatest } from '../src/db/migrate';
import { startBenchPostgres } from './lib/database';
import type { BenchPostgres } from './lib/database';
import { onCleanup, runBench, started, stopOnCleanup } from './lib/cleanup';
import { peak } from './lib/load';
import type { LoadResult } from './lib/load';
import { startServer } from './lib/processes';
import { writeRequestPool } from './lib/request-pool';
import { swStatusEnv } from './lib/sw-status';

/**
 * `npm run bench:relay`: what the relay outbox costs the ingest path (b).
 *
 *   (base)    sw-status at BENCH_BASELINE_REF (default: the last commit before the outbox), on
 *             a database migrated with that commit's migrations: (b) without the outbox;
 *   (outbox)  sw-status now, no message has a client callback: the outbox must cost nothing
 *             (target: within 5 % of base);
 *   (seeded)  sw-status now, every callback's message already exists (sent through the proxy)
 *             without a client callback: the same work as (relayed) but the relay;
 *   (relayed) the same with every message's client callback pointing at a local no-op app:
 *             every callback is written to the outbox and relayed. Reported: relays/s during
 *             the run and its cost to (seeded).
 *
 * wrk at 32 connections, each run a fresh server and database; the scenarios alternate for
 * BENCH_ROUNDS rounds (default 3) and medians are reported, since the machine is shared.
 * Env as bench/run.ts (BENCH_DATABASE_URL, BENCH_SECONDS, BENCH_WARMUP_SECONDS), plus
 * BENCH_ROUNDS, BENCH_BASELINE_REF, BENCH_SCENARIOS (e.g. `base,outbox`),
 * BENCH_RELAY_HOST_CONCURRENCY (RELAY_HOST_CONCURRENCY of the runs, default 4 as in
 * production) and BENCH_PROFILE=1 (CPU profile of the relayed runs into bench/results/profiles).
 *
 * However it ends — Ctrl-C and SIGTERM included (exit 130, 143) — it leaves nothing behind
 * (bench/lib/cleanup.ts): no servers or wrk, no embedded PostgreSQL or its data, no databases
 * on BENCH_DATABASE_URL, no baseline worktree, nothing in the temp directory.
 */

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
// The commit this branch started from: main before the relay outbox existed.
const BASELINE_REF = process.env.BENCH_BASELINE_REF ?? '4f948c1';
const CONNECTIONS = 32;
// BENCH_SCENARIOS=base,outbox repeats just the pair the 5 % target is about.
const SCENARIOS = (process.env.BENCH_SCENARIOS ?? 'base,outbox,seeded,relayed')
  .split(',')
  .map((key) => key.trim()) as Key[];
const PROFILE = process.env.BENCH_PROFILE === '1';
const MAX_EXPECTED_RPS = 8_000;
const RESULTS = path.join(__dirname, 'results');
const REPO = path.resolve(__dirname, '..');

type Key = 'base' | 'outbox' | 'seeded' | 'relayed';

interface Run {
  load: LoadResult;
  /**
   * CPU per request in µs, of the service and of PostgreSQL: on a shared machine other work
   * moves throughput a lot, and the CPU a request costs much less.
   */
  service_cpu_us: number;
  postgres_cpu_us: number;
  /** (relayed) relays delivered during the measured seconds, per second. */
  relays_per_second?: number;
  /** (relayed) relay jobs still pending when the measurement ended. */
  relays_pending_at_end?: number;
}

async function main(): Promise<void> {
  if (spawnSync('wrk', ['-v']).error) throw new Error('wrk is not installed: apt-get install wrk');
  const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-bench-relay-'));
  onCleanup(() => rmSync(work, { recursive: true, force: true }));
  mkdirSync(RESULTS, { recursive: true });
  const baseline = path.join(work, 'baseline');
  // Registered before git makes it, and run before `work` is removed: git forgets a worktree
  // only through `worktree remove`.
  onCleanup(() =>
    spawnSync('git', ['-C', REPO, 'worktree', 'remove', '--force', baseline], { stdio: 'ignore' }),
  );
  await git(['worktree', 'add', '--detach', baseline, BASELINE_REF]);
  symlinkSync(path.join(REPO, 'node_modules'), path.join(baseline, 'node_modules'));
  const [postgres] = await started(startBenchPostgres(), (server) => server.close());
  log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, node ${process.version}`);
  log(`baseline: ${BASELINE_REF}; PostgreSQL: ${postgres.source}`);

  const warmupPool = path.join(work, 'warmup.pool');
  const measurePool = path.join(work, 'measure.pool');
  await writeRequestPool(warmupPool, WARMUP * MAX_EXPECTED_RPS);
  await writeRequestPool(measurePool, SECONDS * MAX_EXPECTED_RPS);
  const messageIds = [...poolIds(warmupPool), ...poolIds(measurePool)];

  // The customer's app: answers every relay 200 at once (bench/servers/bare-node.ts).
  const noopPort = await freePort();
  await started(
    startServer('bench/servers/bare-node.ts', noopPort, { NODE_ENV: 'production' }),
    (server) => server.stop(),
  );
  const noopUrl = `http://127.0.0.1:${noopPort}/status`;

  const runs: Record<Key, Run[]> = { base: [], outbox: [], seeded: [], relayed: [] };
  const order = SCENARIOS;
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order so that drift on a shared machine does not favour one scenario.
    const keys = round % 2 === 0 ? order : [...order].reverse();
    for (const key of keys) {
      const run = await scenario(key, postgres, baseline, work, messageIds, noopUrl, {
        warmupPool,
        measurePool,
      });
      runs[key].push(run);
      log(
        `round ${round + 1} (${key.padEnd(7)}) ${String(run.load.rps).padStart(6)} req/s  p99 ${run.load.p99_ms.toFixed(1)} ms  failures ${run.load.failures}  ` +
          `CPU/request ${run.service_cpu_us} µs service + ${run.postgres_cpu_us} µs PostgreSQL` +
          (run.relays_per_second === undefined
            ? ''
            : `  relays ${run.relays_per_second}/s, ${run.relays_pending_at_end} pending at end`),
      );
    }
  }

  const median = (values: number[]) =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const rps = (key: Key) => median(runs[key].map((r) => r.load.rps));
  const cpuUs = (key: Key) =>
    runs[key].length === 0
      ? null
      : median(runs[key].map((r) => r.service_cpu_us + r.postgres_cpu_us));
  const ratio = (x: number, y: number) => Math.round((x / y) * 1000) / 1000;
  const pairedRatio = (x: Key, y: Key): number | null => {
    const pairs = runs[x].map((run, i) => (runs[y][i] ? run.load.rps / runs[y][i]!.load.rps : NaN));
    const valid = pairs.filter((value) => Number.isFinite(value));
    return valid.length === 0 ? null : ratio(median(valid), 1);
  };
  const results = {
    date: new Date().toISOString(),
    baseline_ref: BASELINE_REF,
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model },
    node: process.version,
    seconds: SECONDS,
    rounds: ROUNDS,
    median_rps: {
      base: rps('base'),
      outbox: rps('outbox'),
      seeded: rps('seeded'),
      relayed: rps('relayed'),
    },
    relay_host_concurrency: process.env.BENCH_RELAY_HOST_CONCURRENCY ?? '4',
    median_cpu_us_per_request: {
      base: cpuUs('base'),
      outbox: cpuUs('outbox'),
      seeded: cpuUs('seeded'),
      relayed: cpuUs('relayed'),
    },
    median_relays_per_second: median(runs.relayed.map((r) => r.relays_per_second ?? 0)),
    ratios: {
      outbox_over_base: ratio(rps('outbox'), rps('base')),
      relayed_over_seeded: ratio(rps('relayed'), rps('seeded')),
    },
    // The two runs of a pair are adjacent in every round, so they share the machine's
    // state: the median of the per-round ratios is the steadier number on a noisy machine.
    paired_median_ratios: {
      outbox_over_base: pairedRatio('outbox', 'base'),
      relayed_over_seeded: pairedRatio('relayed', 'seeded'),
    },
    // Judged only when both scenarios ran (BENCH_SCENARIOS).
    targets: Object.fromEntries(
      pairedRatio('outbox', 'base') === null
        ? []
        : [['outbox within 5 % of base (paired median)', pairedRatio('outbox', 'base')! >= 0.95]],
    ),
    runs,
  };
  const file = path.join(RESULTS, `bench-relay-${results.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  log('');
  log(
    `median CPU per request (service + PostgreSQL, µs): ${JSON.stringify(results.median_cpu_us_per_request)}`,
  );
  log(
    `paired medians: outbox/base ${results.paired_median_ratios.outbox_over_base}, ` +
      `relayed/seeded ${results.paired_median_ratios.relayed_over_seeded}`,
  );
  log(
    `median req/s: base ${results.median_rps.base}, outbox ${results.median_rps.outbox} (${results.ratios.outbox_over_base}×), ` +
      `seeded ${results.median_rps.seeded}, relayed ${results.median_rps.relayed} (${results.ratios.relayed_over_seeded}×), ` +
      `relays ${results.median_relays_per_second}/s`,
  );
  for (const [target, met] of Object.entries(results.targets))
    log(`${met ? 'met    ' : 'NOT MET'}  ${target}`);
  log(`written: ${path.relative(process.cwd(), file)}`);
}

async function scenario(
  key: Key,
  postgres: BenchPostgres,
  baseline: string,
  work: string,
  messageIds: string[],
  noopUrl: string,
  pools: { warmupPool: string; measurePool: string },
): Promise<Run> {
  await postgres.settle();
  // Every scenario's database is made the same way, with its own commit's migrations.
  const databaseUrl = await migratedDatabase(
    postgres,
    path.join(key === 'base' ? baseline : REPO, 'db', 'migrations'),
  );
  if (key === 'seeded' || key === 'relayed') {
    await seedMessages(databaseUrl, messageIds, key === 'relayed' ? noopUrl : null);
    await postgres.settle();
  }
  const spoolDir = mkdtempSync(path.join(work, 'spool-'));
  const env = {
    ...swStatusEnv(databaseUrl, await freePort(), spoolDir),
    RELAY_ALLOWED_NETWORKS: '127.0.0.0/8',
    RELAY_ALLOW_HTTP: 'true',
    // Every relay goes to the one no-op app: its per-host limit bounds relays/s.
    RELAY_HOST_CONCURRENCY: process.env.BENCH_RELAY_HOST_CONCURRENCY ?? '4',
  };
  const script = key === 'base' ? path.join(baseline, 'src', 'main.ts') : 'src/main.ts';
  const flags =
    PROFILE && key === 'relayed'
      ? ['--cpu-prof', `--cpu-prof-dir=${path.join(RESULTS, 'profiles')}`]
      : [];
  const [server, stopServer] = await started(
    startServer(script, await freePort(), env, flags),
    (running) => running.stop(),
  );
  try {
    await peak(server.port, pools.warmupPool, WARMUP, CONNECTIONS);
    const started = new Date();
    const sampler = server.sample();
    const postgresBefore = postgresCpuSeconds(databaseUrl);
    const load = await peak(server.port, pools.measurePool, SECONDS, CONNECTIONS);
    const postgresSeconds = postgresCpuSeconds(databaseUrl) - postgresBefore;
    const { cpu_cores } = sampler.stop();
    const ended = new Date();
    const cpu = {
      service_cpu_us: Math.round((cpu_cores * SECONDS * 1e6) / load.requests),
      postgres_cpu_us: Math.round((postgresSeconds * 1e6) / load.requests),
    };
    if (key !== 'relayed') return { load, ...cpu };
    const counts = await query<{ delivered: number; pending: number }>(
      databaseUrl,
      `SELECT count(*) FILTER (WHERE delivered_at >= $1 AND delivered_at < $2)::int AS delivered,
              count(*) FILTER (WHERE state = 'pending')::int AS pending
       FROM relay_jobs`,
      [started, ended],
    );
    return {
      load,
      ...cpu,
      relays_per_second: Math.round(
        counts.delivered / ((ended.getTime() - started.getTime()) / 1000),
      ),
      relays_pending_at_end: counts.pending,
    };
  } finally {
    await stopServer();
    await postgres.dropDatabase(databaseUrl);
  }
}

/**
 * An empty database migrated from scratch with the given migrations (the baseline's have no
 * outbox and no sweep index).
 */
async function migratedDatabase(postgres: BenchPostgres, migrations: string): Promise<string> {
  const url = await postgres.createDatabase();
  await query(url, 'DROP SCHEMA public CASCADE', []);
  await query(url, 'CREATE SCHEMA public', []);
  const { db } = createDb(url, 1);
  try {
    await migrateToLatest(db, migrations);
  } finally {
    await db.destroy();
  }
  return url;
}

/** Every pool message as already sent through the proxy (queued), with or without a client callback. */
async function seedMessages(url: string, ids: string[], callback: string | null): Promise<void> {
  for (let start = 0; start < ids.length; start += 20_000) {
    await query(
      url,
      `INSERT INTO messages (id, api, project_id, kind, status, raw_status, status_rank,
         status_received_at, sent_via_proxy, client_status_callback, last_event_at)
       SELECT id, 'cxml', 'ea108133-d6b3-407c-9536-9fad8a929a6a', 'sms', 'queued', 'queued', 10,
         now(), true, $2, now()
       FROM unnest($1::text[]) AS id`,
      [ids.slice(start, start + 20_000), callback],
    );
  }
  await query(url, 'VACUUM ANALYZE messages', []);
}

/**
 * CPU seconds used so far by the PostgreSQL server of `url` (its postmaster, found by port,
 * and every process it started): Linux /proc, children that exited are not counted.
 */
function postgresCpuSeconds(url: string): number {
  const port = new URL(url).port || '5432';
  const stat = (pid: string) => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return { ppid: fields[1]!, ticks: Number(fields[11]) + Number(fields[12]) };
  };
  const pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  const postmaster = pids.find((pid) => {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return (
        args[0]!.endsWith('/postgres') &&
        args.includes('-p') &&
        args[args.indexOf('-p') + 1] === port
      );
    } catch {
      return false;
    }
  });
  if (!postmaster) return 0;
  let ticks = 0;
  for (const pid of pids) {
    try {
      const s = stat(pid);
      if (pid === postmaster || s.ppid === postmaster) ticks += s.ticks;
    } catch {
      // gone meanwhile
    }
  }
  return ticks / 100; // USER_HZ
}

function poolIds(file: string): string[] {
  const ids: string[] = [];
  for (const match of readFileSync(file, 'utf8').matchAll(/MessageSid=([0-9a-f-]{36})/g))
    ids.push(match[1]!);
  return ids;
}

async function query<T>(url: string, text: string, values: unknown[]): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(text, values);
    return rows[0] as T;
  } finally {
    await client.end();
  }
}

/**
 * `git -C REPO …` in a process group of its own, which the clean-up stops whole when the run
 * ends meanwhile: `worktree add` removes its half-made worktree then, and the `git reset` it
 * runs does not write on into a directory being removed.
 */
async function git(args: string[]): Promise<void> {
  const child = spawn('git', ['-C', REPO, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  stopOnCleanup(child, { group: true });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`git ${args.join(' ')} exited with ${code}: ${stderr.trim()}`);
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

runBench(main);
