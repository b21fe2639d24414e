import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';

export interface Server {
  pid: number;
  port: number;
  /** Starts sampling the process's resident memory and CPU time. */
  sample(): Sampler;
  stop(): Promise<void>;
}

export interface Sampler {
  /** Peak RSS (MB) and average CPU use (fraction of one core) since sample(). */
  stop(): { max_rss_mb: number; cpu_cores: number };
}

/** BENCH_SERVER_LOGS=1: the servers' stdout and stderr go to the benchmark's. */
const SERVER_LOGS = process.env.BENCH_SERVER_LOGS === '1';

/** Runs a TypeScript entry point with tsx (as `npm start` does) and waits for its port. */
export async function startServer(
  script: string,
  port: number,
  env: Record<string, string>,
  nodeFlags: string[] = [],
): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...nodeFlags, script], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, PORT: String(port) },
    stdio: ['ignore', SERVER_LOGS ? 'inherit' : 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    if (SERVER_LOGS) process.stderr.write(chunk);
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 60_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${script} did not start listening on ${port}:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    pid: child.pid!,
    port,
    sample: () => {
      // Seen once: a server gone between its warmup and its measurement. Say how it ended.
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `${script} ended (${child.exitCode ?? child.signalCode}) before its measurement:\n${stderr}`,
        );
      }
      return sampler(child);
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU time a process has used so far, in clock ticks (utime + stime; 100 a second). */
export function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** A process's resident memory now, in MB (/proc/<pid>/status). */
export function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) / 1024;
}

function sampler(child: ChildProcess): Sampler {
  const pid = child.pid!;
  const started = Date.now();
  const startTicks = cpuTicks(pid);
  let maxRss = rssMb(pid);
  const timer = setInterval(() => {
    if (child.exitCode === null) maxRss = Math.max(maxRss, rssMb(pid));
  }, 200);
  return {
    stop() {
      clearInterval(timer);
      maxRss = Math.max(maxRss, rssMb(pid));
      const seconds = (Date.now() - started) / 1000;
      return {
        max_rss_mb: Math.round(maxRss),
        cpu_cores: Math.round(((cpuTicks(pid) - startTicks) / CLOCK_TICKS / seconds) * 100) / 100,
      };
    },
  };
}
