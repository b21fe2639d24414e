import http from 'node:http';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

export interface LatencyResult {
  requests: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  /** Answers other than 200. */
  failures: number;
}

/** One request: its path, when it was due or written (epoch ms), and its latency. */
export interface LatencySample {
  path: string;
  at: number;
  ms: number;
}

/**
 * What a measurement also hands over when asked: every request, to see which kind of request
 * makes the tail and when, and how late the client's own event loop ran meanwhile — a stall
 * of the load client (its GC, the machine's scheduler) looks like a slow answer otherwise.
 */
export interface LatencyDetail {
  samples: LatencySample[];
  clientLoopDelay: { p99_ms: number; max_ms: number };
}

/** Records the client's event-loop delay while `run` runs. */
async function withLoopDelay<T>(
  run: () => Promise<T>,
  detail: ((detail: LatencyDetail) => void) | undefined,
  samples: LatencySample[],
): Promise<T> {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  try {
    return await run();
  } finally {
    delay.disable();
    detail?.({
      samples,
      clientLoopDelay: {
        p99_ms: Math.round(delay.percentile(99) / 1e4) / 100,
        max_ms: Math.round(delay.max / 1e4) / 100,
      },
    });
  }
}

/**
 * GETs every path once, `concurrency` at a time, over keep-alive connections; latency of each
 * from the request being written to the last byte of the answer.
 */
export async function measureGets(
  port: number,
  paths: readonly string[],
  concurrency: number,
  headers: Record<string, string> = {},
  detail?: (detail: LatencyDetail) => void,
): Promise<LatencyResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  const samples: LatencySample[] = [];
  let failures = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const path = paths[next++]!;
      const started = performance.now();
      const status = await getStatus(agent, port, path, headers);
      const ms = performance.now() - started;
      latencies.push(ms);
      if (detail) samples.push({ path, at: performance.timeOrigin + started, ms });
      if (status !== 200) failures++;
    }
  };
  await withLoopDelay(
    () => Promise.all(Array.from({ length: concurrency }, worker)),
    detail,
    samples,
  );
  agent.destroy();
  return latencyResult(latencies, failures);
}

/**
 * GETs every path once at a fixed rate over `clients` keep-alive connections (open loop): the
 * i-th request is due at start + i / ratePerSecond whether or not earlier answers are back,
 * and its latency counts from when it was due, so time spent queued behind a slow answer is
 * in the result (no coordinated omission). What `clients` dashboards polling at that combined
 * rate see; measureGets with `concurrency` clients in a closed loop instead finds the most the
 * service can answer (its saturation), where latency is mostly queueing.
 */
export async function measureGetsAtRate(
  port: number,
  paths: readonly string[],
  clients: number,
  ratePerSecond: number,
  headers: Record<string, string> = {},
  detail?: (detail: LatencyDetail) => void,
): Promise<LatencyResult & { rate_per_second: number; clients: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const latencies: number[] = [];
  const samples: LatencySample[] = [];
  let failures = 0;
  const start = performance.now() + 20;
  const interval = 1000 / ratePerSecond;
  await withLoopDelay(
    () =>
      Promise.all(
        paths.map(async (path, index) => {
          const due = start + index * interval;
          const wait = due - performance.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          const status = await getStatus(agent, port, path, headers);
          const ms = performance.now() - due;
          latencies.push(ms);
          if (detail) samples.push({ path, at: performance.timeOrigin + due, ms });
          if (status !== 200) failures++;
        }),
      ),
    detail,
    samples,
  );
  agent.destroy();
  return { ...latencyResult(latencies, failures), rate_per_second: ratePerSecond, clients };
}

/** Percentiles (nearest rank) of latencies in ms, rounded to 10 µs. */
export function latencyResult(latencies: number[], failures: number): LatencyResult {
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  const ms = (value: number) => Math.round(value * 100) / 100;
  return {
    requests: latencies.length,
    p50_ms: ms(at(0.5)),
    p90_ms: ms(at(0.9)),
    p99_ms: ms(at(0.99)),
    max_ms: ms(latencies.at(-1) ?? 0),
    failures,
  };
}

/** One GET over `agent`, its body read and dropped; resolves with the status code. */
function getStatus(
  agent: http.Agent,
  port: number,
  path: string,
  headers: Record<string, string>,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}
