import http from 'node:http';
import { performance } from 'node:perf_hooks';

export interface LatencyResult {
  requests: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  /** Answers other than 200. */
  failures: number;
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
): Promise<LatencyResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let failures = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const path = paths[next++]!;
      const started = performance.now();
      const status = await new Promise<number>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          })
          .on('error', reject);
      });
      latencies.push(performance.now() - started);
      if (status !== 200) failures++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
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
