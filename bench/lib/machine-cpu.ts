import { readFileSync } from 'node:fs';

/** The machine's CPU time so far, in ticks (/proc/stat's first line): all of it, idle, stolen. */
export interface MachineCpu {
  total: number;
  idle: number;
  steal: number;
}

export function machineCpu(): MachineCpu {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.slice(1, 9).map(Number);
  return {
    total: user! + nice! + system! + idle! + iowait! + irq! + softirq! + steal!,
    idle: idle! + iowait!,
    steal: steal!,
  };
}

/**
 * How busy the whole machine was between two readings, as a share of all its cores (0–1):
 * the server, PostgreSQL, the load generator and the kernel together. Near 1, a benchmark is
 * bound by the machine's CPU; well below, by latency (a commit's wait).
 */
export function busyBetween(before: MachineCpu, after: MachineCpu): number {
  const ticks = after.total - before.total;
  if (ticks <= 0) return 0;
  return Math.round((1 - (after.idle - before.idle) / ticks) * 100) / 100;
}
