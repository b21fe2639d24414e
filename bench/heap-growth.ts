import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../src/db/free-port';
import { PRETENURING_FLAG } from '../src/process/heap-tuning';
import { startBenchPostgres } from './lib/database';
import { fixedRate } from './lib/load';
import { rssMb, startServer } from './lib/processes';
import { writeRequestPool } from './lib/request-pool';
import { swStatusEnv } from './lib/sw-status';

/**
 * `npm run bench:heap-growth`: whether a freshly started sw-status (src/main.ts) grows under
 * a steady load of callbacks, with V8's allocation-site pretenuring off (the service's
 * default, src/process/heap-tuning.ts) and on (`--allocation-site-pretenuring` on node's
 * command line), servers alternating. Each server gets its own database and a fixed rate of
 * signed callbacks (open loop, 32 connections) from its first second; its RSS is read every
 * 250 ms. A server "grew" when its RSS rose by more than GROWTH_MB from the first second of
 * load to the end: what pretenured request objects do, filling old space with garbage until
 * a full collection.
 *
 * Env: HEAP_SERVERS (5 of each), HEAP_RATE (3400/s), HEAP_SECONDS (5).
 */
const SERVERS = Number(process.env.HEAP_SERVERS ?? 5);
const RATE = Number(process.env.HEAP_RATE ?? 3_400);
const SECONDS = Number(process.env.HEAP_SECONDS ?? 5);
const GROWTH_MB = 25;

const SETTINGS = [
  { name: 'pretenuring off (default)', flags: [] as string[] },
  { name: 'pretenuring on', flags: [PRETENURING_FLAG] },
];

interface Trace {
  setting: string;
  rss_mb_after_1s: number;
  rss_mb_end: number;
  rss_mb_max: number;
  grew: boolean;
}

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-heap-growth-'));
  const postgres = await startBenchPostgres();
  const traces: Trace[] = [];
  try {
    const pool = path.join(work, 'callbacks.pool');
    await writeRequestPool(pool, Math.ceil(RATE * (SECONDS + 3) * 1.1));
    for (let round = 0; round < SERVERS; round++) {
      for (const setting of round % 2 === 0 ? SETTINGS : [...SETTINGS].reverse()) {
        await postgres.settle();
        const url = await postgres.createDatabase();
        const spool = mkdtempSync(path.join(work, 'spool-'));
        const server = await startServer(
          'src/main.ts',
          await freePort(),
          swStatusEnv(url, await freePort(), spool),
          setting.flags,
        );
        try {
          const samples: number[] = [];
          const timer = setInterval(() => samples.push(Math.round(rssMb(server.pid))), 250);
          // fixed-rate.ts's own first 2 s are its warmup: the load runs SECONDS + 2 in all.
          await fixedRate(server.port, pool, RATE, SECONDS, 32);
          clearInterval(timer);
          const trace: Trace = {
            setting: setting.name,
            rss_mb_after_1s: samples[4] ?? samples[0]!,
            rss_mb_end: samples.at(-1)!,
            rss_mb_max: Math.max(...samples),
            grew: false,
          };
          trace.grew = trace.rss_mb_end - trace.rss_mb_after_1s > GROWTH_MB;
          traces.push(trace);
          log(
            `${setting.name.padEnd(26)} RSS ${trace.rss_mb_after_1s} MB after 1 s → ` +
              `${trace.rss_mb_end} MB at the end (max ${trace.rss_mb_max})${trace.grew ? '  grew' : ''}`,
          );
        } finally {
          await server.stop();
          await postgres.dropDatabase(url);
        }
      }
    }
    log('');
    for (const setting of SETTINGS) {
      const own = traces.filter((trace) => trace.setting === setting.name);
      const ends = own.map((trace) => trace.rss_mb_end);
      log(
        `${setting.name.padEnd(26)} ${own.filter((trace) => trace.grew).length} of ${own.length} grew by ` +
          `more than ${GROWTH_MB} MB; RSS at the end ${Math.min(...ends)}–${Math.max(...ends)} MB`,
      );
    }
    const results = path.join(__dirname, 'results');
    mkdirSync(results, { recursive: true });
    const date = new Date().toISOString();
    const file = path.join(results, `heap-growth-${date.replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      file,
      `${JSON.stringify({ date, node: process.version, rate: RATE, seconds: SECONDS, growth_mb: GROWTH_MB, traces }, null, 2)}\n`,
    );
    log(`written: ${path.relative(process.cwd(), file)}`);
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
