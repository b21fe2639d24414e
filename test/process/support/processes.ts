import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The PIDs of running processes whose program is `program` (its file name) and one of whose
 * arguments `matches`: the initdb or postgres a test started below its own directory.
 */
export function processesOf(program: string, matches: (arg: string) => boolean): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (path.basename(args[0] ?? '') !== program) continue;
    if (args.some(matches)) found.push(Number(entry));
  }
  return found;
}

/** The parent PID, from /proc/<pid>/stat (after the command's name in parentheses); 0 if gone. */
export function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0; // gone meanwhile
  }
}

/** Whether `pid` is a child of `ancestor`, or a child's child, and so on (by parentOf). */
export function descendsFrom(pid: number, ancestor: number): boolean {
  for (let parent = parentOf(pid); parent > 1; parent = parentOf(parent)) {
    if (parent === ancestor) return true;
  }
  return false;
}
