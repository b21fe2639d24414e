import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * `tsx bench/heap-profile-summary.ts FILE.heapprofile [frames]`: where a sampling heap profile's
 * bytes were allocated (bench/lib/heap-sampler.ts), the allocating function with its `frames`
 * (default 4) nearest callers, heaviest first.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  children: ProfileNode[];
}

const [file, framesArg] = process.argv.slice(2);
if (!file) throw new Error('usage: heap-profile-summary FILE.heapprofile [frames]');
const frames = Number(framesArg ?? 4);
const profile = JSON.parse(readFileSync(file, 'utf8')) as { head: ProfileNode };

const bySite = new Map<string, number>();
let total = 0;
const walk = (node: ProfileNode, stack: string[]): void => {
  const here = [...stack, describe(node.callFrame)];
  if (node.selfSize > 0) {
    const site = here.slice(-frames).reverse().join(' < ');
    bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
    total += node.selfSize;
  }
  for (const child of node.children) walk(child, here);
};
walk(profile.head, []);

console.log(`total ${(total / 1024).toFixed(0)} kB`);
for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
  console.log(
    `${((bytes / total) * 100).toFixed(1).padStart(5)} %  ${(bytes / 1024).toFixed(0).padStart(7)} kB  ${site}`,
  );
}

function describe({ functionName, url, lineNumber }: CallFrame): string {
  const where = url ? `${path.basename(url)}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
}
