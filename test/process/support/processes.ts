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
