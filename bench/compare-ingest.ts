import { mkdtempSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../src/db/free-port';
import { startBenchPostgres } from './lib/database';
import { peak } from './lib/load';
import { median } from './lib/median';
import { postgresCpuSeconds, postmasterPid } from './lib/postgres-cpu';
import { startServer } from './lib/processes';
import { writeRequestPool } from './lib/request-pool';
import { swStatusEnv } from './lib/sw-status';

/**
 * `npm run bench:compare`: ingest (b) of this checkout against another one, on the same
 * PostgreSQL, alternating, so a change to the write path is measured against what it changes
 * (the machine's noise hits both alike). Each run: a fresh database migrated by its own
 * checkout's migrations, sw-status (src/main.ts, production mode) from that checkout, a warmup,
 * then wrk with 32 connections. Reports each run and the medians: requests per second, and the
 * PostgreSQL server's CPU time per event (all its processes, from /proc: bench/lib/postgres-cpu.ts).
 *
 *   BENCH_BASELINE_DIR=/path/to/other/checkout npm run bench:compare
 *   BENCH_BASELINE_ENV='INGEST_BATCH_WAIT_MS=2' npm run bench:compare   # a setting, same code
 *
 * The baseline checkout needs its dependencies (npm ci there, or a node_modules symlink).
 * BENCH_BASELINE_ENV and BENCH_CURRENT_ENV give one side settings of its own (`NAME=value`
 * pairs, as BENCH_SW_STATUS_ENV, which both get); with either and no BENCH_BASELINE_DIR, the
 * baseline is this checkout.
 * Env: BENCH_RUNS (5 per checkout), BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (5),
 * BENCH_CONNECTIONS (32).
 */

const SIDE_ENV = {
  baseline: process.env.BENCH_BASELINE_ENV ?? '',
  current: process.env.BENCH_CURRENT_ENV ?? '',
};
const BASELINE =
  process.env.BENCH_BASELINE_DIR ??
  (SIDE_ENV.baseline || SIDE_ENV.current ? path.resolve(__dirname, '..') : undefined);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

async function main(): Promise<void> {
  if (!BASELINE || !existsSync(path.join(BASELINE, 'src', 'main.ts'))) {
    throw new Error(
      'BENCH_BASELINE_DIR must name another checkout of sw-status (or BENCH_BASELINE_ENV or BENCH_CURRENT_ENV be set)',
    );
  }
  const checkouts = {
    baseline: path.resolve(BASELINE),
    current: path.resolve(__dirname, '..'),
  };
  const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-compare-'));
  const postgres = await startBenchPostgres();
  const rps: Record<keyof typeof checkouts, number[]> = { baseline: [], current: [] };
  const pgMicros: Record<keyof typeof checkouts, number[]> = { baseline: [], current: [] };
  const postmaster = await postmasterPid(postgres.adminUrl);
  try {
    const warmupPool = path.join(work, 'warmup.pool');
    const measurePool = path.join(work, 'measure.pool');
    await writeRequestPool(warmupPool, WARMUP * 20_000);
    await writeRequestPool(measurePool, SECONDS * 20_000);
    for (let run = 0; run < RUNS; run++) {
      // Alternate which goes first, so neither always follows the other's vacuum.
      const order =
        run % 2 === 0 ? (['baseline', 'current'] as const) : (['current', 'baseline'] as const);
      for (const which of order) {
        const dir = checkouts[which];
        await postgres.settle();
        const databaseUrl = await postgres.createDatabase(path.join(dir, 'db', 'migrations'));
        const spoolDir = mkdtempSync(path.join(work, 'spool-'));
        const server = await startServer(
          path.join(dir, 'src', 'main.ts'),
          await freePort(),
          swStatusEnv(databaseUrl, await freePort(), spoolDir, SIDE_ENV[which]),
        );
        try {
          await peak(server.port, warmupPool, WARMUP, CONNECTIONS);
          const cpuBefore = postgresCpuSeconds(postmaster);
          const result = await peak(server.port, measurePool, SECONDS, CONNECTIONS);
          const perEvent =
            Math.round(((postgresCpuSeconds(postmaster) - cpuBefore) / result.requests) * 1e7) / 10;
          if (result.failures > 0) throw new Error(`${which}: ${result.failures} failed requests`);
          rps[which].push(result.rps);
          pgMicros[which].push(perEvent);
          log(
            `run ${run + 1} ${which.padEnd(8)} ${result.rps} req/s  p99 ${result.p99_ms} ms  ` +
              `PostgreSQL CPU ${perEvent} µs/event`,
          );
        } finally {
          await server.stop();
          await postgres.dropDatabase(databaseUrl);
        }
      }
    }
    const result = {
      date: new Date().toISOString(),
      baseline: checkouts.baseline,
      settings: SIDE_ENV,
      connections: CONNECTIONS,
      runs: rps,
      median_baseline: median(rps.baseline),
      median_current: median(rps.current),
      current_over_baseline: Math.round((median(rps.current) / median(rps.baseline)) * 1000) / 1000,
      postgres_cpu_us_per_event: {
        runs: pgMicros,
        median_baseline: median(pgMicros.baseline),
        median_current: median(pgMicros.current),
      },
    };
    const results = path.join(__dirname, 'results');
    mkdirSync(results, { recursive: true });
    const file = path.join(results, `compare-${result.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    log(
      `median: baseline ${result.median_baseline} req/s, current ${result.median_current} req/s → ${result.current_over_baseline}`,
    );
    log(
      `PostgreSQL CPU per event (median): baseline ${result.postgres_cpu_us_per_event.median_baseline} µs, ` +
        `current ${result.postgres_cpu_us_per_event.median_current} µs`,
    );
  } finally {
    await postgres.close();
    rmSync(work, { recursive: true, force: true });
  }
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
