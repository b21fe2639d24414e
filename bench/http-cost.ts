import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPublicApp } from '../src/app';
import { loadConfig } from '../src/config';
import type { Lifecycle } from '../src/http/health.routes';
import { createListener, listenerSettings } from '../src/http/listener';
import { createLogger } from '../src/logger';
import type { EventRecorder } from '../src/messages/event-recorder';
import { createMetrics } from '../src/metrics/metrics';
import { onCleanup, runBench } from './lib/cleanup';
import { peak } from './lib/load';
import { writeRequestPool } from './lib/request-pool';
import { swStatusEnv } from './lib/sw-status';

/**
 * `npm run bench:http-cost`: the public listener's own CPU per callback, without a database.
 * The real public app (middleware, rate limit, metrics, body reading, signature, parsing,
 * normalisation) answers wrk's signed callbacks on a real socket, with a recorder that settles
 * each event on the next turn of the event loop instead of storing it. The server runs in this
 * process, so process.cpuUsage() over a run divided by its requests is its CPU per callback:
 * what the HTTP side of `npm run bench`'s (b) costs before any database work. Compare two
 * checkouts by running it in each; rounds show the spread.
 *
 * Env: BENCH_SECONDS (8), BENCH_ROUNDS (4). Ctrl-C or SIGTERM stops it, without leaving its
 * request pool (tens of MB in the temp directory) or wrk behind (bench/lib/cleanup.ts).
 */
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-http-cost-'));
  onCleanup(() => rmSync(work, { recursive: true, force: true }));
  const pool = path.join(work, 'callbacks.pool');
  await writeRequestPool(pool, SECONDS * 50_000);
  const config = loadConfig({
    ...swStatusEnv('postgres://unused@127.0.0.1:1/unused', 0, work),
    PORT: '0',
  });
  const recorder: EventRecorder = {
    record: () => new Promise((resolve) => setImmediate(() => resolve('recorded'))),
    drain: () => Promise.resolve(),
  };
  const lifecycle: Lifecycle = { draining: false };
  const app = createPublicApp({
    config,
    logger: createLogger('info'),
    db: undefined as never, // the public app reaches the database only through the recorder
    recorder,
    lifecycle,
    metrics: createMetrics(),
  });
  const server = createListener(app, listenerSettings(config));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const before = process.cpuUsage();
      const result = await peak(port, pool, SECONDS, 32, 1);
      const used = process.cpuUsage(before);
      const perRequest = (micros: number) => (micros / result.requests).toFixed(1);
      console.log(
        `round ${round}: ${result.rps} req/s, failures ${result.failures}, ` +
          `server CPU ${perRequest(used.user + used.system)} µs per callback ` +
          `(user ${perRequest(used.user)}, system ${perRequest(used.system)})`,
      );
    }
  } finally {
    server.close();
  }
}

runBench(main);
