import { spawn } from 'node:child_process';
import path from 'node:path';
import { stopOnCleanup } from './cleanup';

export interface LoadResult {
  requests: number;
  /** Completed requests per second (peak runs) or the achieved rate (fixed-rate runs). */
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
  /** Non-2xx answers plus socket errors: must be 0. */
  failures: number;
  pool_wraps: number;
}

const LUA = path.join(__dirname, '..', 'load', 'callbacks.lua');
const FIXED_RATE = path.join(__dirname, '..', 'load', 'fixed-rate.ts');

/** As many requests as the server answers: wrk, closed loop, `connections` connections. */
export async function peak(
  port: number,
  pool: string,
  seconds: number,
  connections: number,
  threads = 2,
): Promise<LoadResult> {
  const output = await run('wrk', [
    `-t${threads}`,
    `-c${connections}`,
    `-d${seconds}s`,
    '--timeout',
    '10s',
    '-s',
    LUA,
    `http://127.0.0.1:${port}/callbacks/cxml`,
    '--',
    pool,
    String(threads),
  ]);
  const json = parse(output);
  const errors = json.errors as Record<string, number>;
  return {
    requests: json.requests,
    rps: Math.round(json.requests / (json.duration_us / 1e6)),
    ...latencies(json),
    failures: errors.status! + errors.connect! + errors.read! + errors.write! + errors.timeout!,
    pool_wraps: json.pool_wraps,
  };
}

/** A fixed request rate, open loop (bench/load/fixed-rate.ts). */
export async function fixedRate(
  port: number,
  pool: string,
  rate: number,
  seconds: number,
  connections: number,
): Promise<LoadResult> {
  const output = await run(process.execPath, [
    '--import',
    'tsx',
    FIXED_RATE,
    String(port),
    pool,
    String(rate),
    String(seconds),
    String(connections),
    '2',
  ]);
  const json = parse(output);
  return {
    requests: json.requests,
    rps: json.achieved_rate,
    ...latencies(json),
    failures: json.non2xx + json.errors,
    pool_wraps: json.pool_wraps,
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

function latencies(json: Json) {
  const ms = (us: number) => Math.round(us / 10) / 100;
  return {
    p50_ms: ms(json.p50_us),
    p90_ms: ms(json.p90_us),
    p99_ms: ms(json.p99_us),
    p999_ms: ms(json.p999_us),
    max_ms: ms(json.max_us),
  };
}

function parse(output: string): Json {
  const line = output.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (!line) throw new Error(`no result in load generator output:\n${output}`);
  return JSON.parse(line.slice('BENCH_JSON '.length)) as Json;
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    stopOnCleanup(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve(output)
        : reject(new Error(`${command} exited with ${code}:\n${output}`)),
    );
  });
}
