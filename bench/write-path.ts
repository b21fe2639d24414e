import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import type * as DatabaseModule from '../src/db/database';
import type * as RecordEventsModule from '../src/messages/record-events';
import type { StatusEvent } from '../src/messages/status-event';
import { startBenchPostgres } from './lib/database';
import type { BenchPostgres } from './lib/database';
import { median } from './lib/median';
import { postgresCpuSeconds, postmasterPid } from './lib/postgres-cpu';

/**
 * `npm run bench:write-path`: what the write path costs PostgreSQL per event, without HTTP, wrk
 * or a busy machine's noise in between: recordEvents (src/messages/record-events.ts) called
 * directly with fixed batches on one connection, for this checkout and, with
 * BENCH_BASELINE_DIR, another one (each with its own code and its own migrations), alternating.
 * Per event: the PostgreSQL server's CPU time (all its processes, /proc), WAL bytes (every
 * index entry and heap row written is in it: the stable measure of a leaner write path) and
 * wall time.
 *
 * Workloads: `new` — batches of 20 callbacks, each for a new message (npm run bench's shape);
 * `lifecycle` — messages created by one batch and moved by the next two (queued → sent →
 * delivered: the existing-message path, SAVE_FOLD).
 * Env: BENCH_BASELINE_DIR, BENCH_RUNS (3), WRITE_PATH_EVENTS (20000 per workload and run),
 * WRITE_PATH_BATCH (20 events per batch; two sizes tell a batch's fixed cost from an event's).
 */

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const EVENTS = Number(process.env.WRITE_PATH_EVENTS ?? 20_000);
const BATCH = Number(process.env.WRITE_PATH_BATCH ?? 20);

interface Checkout {
  name: string;
  dir: string;
}

interface Measured {
  cpu_us: number;
  wal_bytes: number;
  wall_us: number;
  /** This process's CPU per event: the service's side of the write path (kysely, pg, JSON). */
  node_cpu_us: number;
}

async function main(): Promise<void> {
  const checkouts: Checkout[] = [{ name: 'current', dir: path.resolve(__dirname, '..') }];
  const baseline = process.env.BENCH_BASELINE_DIR;
  if (baseline) {
    if (!existsSync(path.join(baseline, 'src', 'messages', 'record-events.ts'))) {
      throw new Error('BENCH_BASELINE_DIR must name another checkout of sw-status');
    }
    checkouts.unshift({ name: 'baseline', dir: path.resolve(baseline) });
  }
  const postgres = await startBenchPostgres();
  const results: Record<string, Record<string, Measured[]>> = {};
  try {
    const postmaster = await postmasterPid(postgres.adminUrl);
    for (let run = 0; run < RUNS; run++) {
      const order = run % 2 === 0 ? checkouts : [...checkouts].reverse();
      for (const checkout of order) {
        for (const workload of ['new', 'lifecycle'] as const) {
          const measured = await measure(postgres, postmaster, checkout, workload);
          ((results[checkout.name] ??= {})[workload] ??= []).push(measured);
          log(
            `run ${run + 1} ${checkout.name.padEnd(8)} ${workload.padEnd(9)} ` +
              `PostgreSQL CPU ${measured.cpu_us} µs/event  WAL ${measured.wal_bytes} B/event  ` +
              `wall ${measured.wall_us} µs/event  Node CPU ${measured.node_cpu_us} µs/event`,
          );
        }
      }
    }
    const medians = Object.fromEntries(
      Object.entries(results).map(([name, workloads]) => [
        name,
        Object.fromEntries(
          Object.entries(workloads).map(([workload, runs]) => [
            workload,
            {
              cpu_us: median(runs.map((r) => r.cpu_us)),
              wal_bytes: median(runs.map((r) => r.wal_bytes)),
              wall_us: median(runs.map((r) => r.wall_us)),
              node_cpu_us: median(runs.map((r) => r.node_cpu_us)),
            },
          ]),
        ),
      ]),
    );
    const summary = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg() },
      events_per_run: EVENTS,
      batch: BATCH,
      checkouts,
      runs: results,
      medians,
    };
    const dir = path.join(__dirname, 'results');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `write-path-${summary.date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`);
    for (const [name, workloads] of Object.entries(medians)) {
      for (const [workload, m] of Object.entries(workloads)) {
        log(
          `median ${name.padEnd(8)} ${workload.padEnd(9)} CPU ${m.cpu_us} µs  WAL ${m.wal_bytes} B  wall ${m.wall_us} µs  Node CPU ${m.node_cpu_us} µs per event`,
        );
      }
    }
  } finally {
    await postgres.close();
  }
}

/** One workload of one checkout on a fresh database migrated by that checkout. */
async function measure(
  postgres: BenchPostgres,
  postmaster: number,
  checkout: Checkout,
  workload: 'new' | 'lifecycle',
): Promise<Measured> {
  await postgres.settle();
  const url = await postgres.createDatabase(path.join(checkout.dir, 'db', 'migrations'));
  // The checkout's own modules: its SQL, its pool wrapper, its prepared statements.
  const { createDb } = (await import(
    path.join(checkout.dir, 'src', 'db', 'database.ts')
  )) as typeof DatabaseModule;
  const { recordEvents } = (await import(
    path.join(checkout.dir, 'src', 'messages', 'record-events.ts')
  )) as typeof RecordEventsModule;
  const handle = createDb(url, 1);
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const batches = makeBatches(workload);
    // Warm the connection (prepared statements) and the caches.
    for (const batch of makeBatches(workload).slice(0, 50)) await recordEvents(handle.db, batch);
    const lsn = async () =>
      (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!
        .lsn;
    const walBefore = await lsn();
    const cpuBefore = postgresCpuSeconds(postmaster);
    const started = process.hrtime.bigint();
    const nodeBefore = process.cpuUsage();
    for (const batch of batches) await recordEvents(handle.db, batch);
    const node = process.cpuUsage(nodeBefore);
    const wall = Number(process.hrtime.bigint() - started) / 1000;
    const cpu = postgresCpuSeconds(postmaster) - cpuBefore;
    const { rows } = await client.query<{ bytes: string }>(
      'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn) AS bytes',
      [walBefore],
    );
    const events = batches.reduce((sum, batch) => sum + batch.length, 0);
    return {
      cpu_us: Math.round((cpu / events) * 1e7) / 10,
      wal_bytes: Math.round(Number(rows[0]!.bytes) / events),
      wall_us: Math.round(wall / events),
      node_cpu_us: Math.round(((node.user + node.system) / events) * 10) / 10,
    };
  } finally {
    await client.end();
    await handle.db.destroy();
    await postgres.dropDatabase(url);
  }
}

type Event = StatusEvent;

function event(messageId: string, rawStatus: string, at: number): Event {
  return {
    messageId,
    api: 'cxml',
    source: 'callback',
    projectId: 'p1',
    status: rawStatus as Event['status'],
    rawStatus,
    errorCode: null,
    errorMessage: null,
    from: '+15550000001',
    to: `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, '0')}`,
    numSegments: 1,
    numMedia: 0,
    providerTimestamp: new Date(at),
    receivedAt: new Date(),
    raw: { MessageSid: messageId, MessageStatus: rawStatus },
  };
}

function makeBatches(workload: 'new' | 'lifecycle'): Event[][] {
  const batches: Event[][] = [];
  const now = Date.now();
  if (workload === 'new') {
    for (let i = 0; i < EVENTS / BATCH; i++) {
      batches.push(Array.from({ length: BATCH }, () => event(randomUUID(), 'sent', now)));
    }
    return batches;
  }
  // Each group of BATCH messages: one batch per status, so two of three batches move
  // messages that exist.
  for (let i = 0; i < EVENTS / (3 * BATCH); i++) {
    const ids = Array.from({ length: BATCH }, () => randomUUID());
    ['queued', 'sent', 'delivered'].forEach((status, k) =>
      batches.push(ids.map((id) => event(id, status, now + k * 1000))),
    );
  }
  return batches;
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
