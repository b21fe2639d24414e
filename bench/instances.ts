import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../src/db/free-port';
import { startBenchPostgres } from './lib/database';
import { peak } from './lib/load';
import { postgresCpuSeconds, postmasterPid } from './lib/postgres-cpu';
import { startServer } from './lib/processes';
import type { Server } from './lib/processes';
import { writeRequestPool } from './lib/request-pool';
import { swStatusEnv } from './lib/sw-status';

/**
 * `npm run bench:instances`: ingest through one sw-status instance vs two on the same
 * PostgreSQL database (docs/scaling.md), alternating, BENCH_RUNS times (3). The same total load
 * either way: wrk with BENCH_CONNECTIONS (32) connections to the one instance, or two wrk with
 * half of them each, one per instance, at once (each its own MessageSids). Reports requests
 * per second, the PostgreSQL server's CPU per event, and the medians.
 *
 * On a machine with few cores the instances, PostgreSQL and wrk share them: a second instance
 * then adds little or nothing, and the run says where the ceiling is, not how far replicas go
 * on separate machines. Env: BENCH_RUNS (3), BENCH_SECONDS (10), BENCH_WARMUP_SECONDS (3),
 * BENCH_CONNECTIONS (32), BENCH_DATABASE_URL.
 */

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

interface Result {
  rps: number;
  failures: number;
  postgres_cpu_us_per_event: number;
}

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-instances-'));
  const postgres = await startBenchPostgres();
  const results: Record<'one' | 'two', Result[]> = { one: [], two: [] };
  try {
    const pools = {
      warmup: [path.join(work, 'warmup-0.pool'), path.join(work, 'warmup-1.pool')],
      measure: [path.join(work, 'measure-0.pool'), path.join(work, 'measure-1.pool')],
    };
    for (const file of pools.warmup) await writeRequestPool(file, WARMUP * 20_000);
    for (const file of pools.measure) await writeRequestPool(file, SECONDS * 20_000);
    const postmaster = await postmasterPid(postgres.adminUrl);
    for (let run = 0; run < RUNS; run++) {
      const order = run % 2 === 0 ? (['one', 'two'] as const) : (['two', 'one'] as const);
      for (const which of order) {
        const count = which === 'one' ? 1 : 2;
        await postgres.settle();
        const databaseUrl = await postgres.createDatabase();
        const servers: Server[] = [];
        try {
          for (let i = 0; i < count; i++) {
            const spoolDir = mkdtempSync(path.join(work, 'spool-'));
            servers.push(
              await startServer(
                'src/main.ts',
                await freePort(),
                swStatusEnv(databaseUrl, await freePort(), spoolDir),
              ),
            );
          }
          const each = Math.floor(CONNECTIONS / count);
          await Promise.all(servers.map((s, i) => peak(s.port, pools.warmup[i]!, WARMUP, each)));
          const before = postgresCpuSeconds(postmaster);
          const loads = await Promise.all(
            servers.map((s, i) =>
              peak(s.port, pools.measure[i]!, SECONDS, each, count === 1 ? 2 : 1),
            ),
          );
          const cpu = postgresCpuSeconds(postmaster) - before;
          const requests = loads.reduce((sum, l) => sum + l.requests, 0);
          const result = {
            rps: loads.reduce((sum, l) => sum + l.rps, 0),
            failures: loads.reduce((sum, l) => sum + l.failures, 0),
            postgres_cpu_us_per_event: Math.round((cpu / Math.max(requests, 1)) * 1e7) / 10,
          };
          results[which].push(result);
          log(
            `run ${run + 1} ${which === 'one' ? '1 instance ' : '2 instances'} ${result.rps} req/s  ` +
              `failures ${result.failures}  PostgreSQL CPU ${result.postgres_cpu_us_per_event} µs/event`,
          );
        } finally {
          await Promise.all(servers.map((s) => s.stop()));
          await postgres.dropDatabase(databaseUrl);
        }
      }
    }
    const median = (values: number[]) =>
      [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const summary = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg() },
      connections: CONNECTIONS,
      seconds: SECONDS,
      runs: results,
      median_rps: {
        one: median(results.one.map((r) => r.rps)),
        two: median(results.two.map((r) => r.rps)),
      },
    };
    const dir = path.join(__dirname, 'results');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `instances-${summary.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`);
    log(
      `median: 1 instance ${summary.median_rps.one} req/s, 2 instances ${summary.median_rps.two} req/s ` +
        `→ ${Math.round((summary.median_rps.two / summary.median_rps.one) * 100) / 100}×`,
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
