import { readFileSync } from 'node:fs';

/**
 * Where a CPU profile's time went: self time per function and per origin (a package in
 * node_modules, Node's internals, this service's own code, GC, idle).
 *
 *   tsx bench/profile-summary.ts bench/results/profiles/<file>.cpuprofile [top]
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
const profile = JSON.parse(readFileSync(file!, 'utf8')) as Profile;
const top = Number(topArg ?? 30);

const selfMicros = new Map<number, number>();
profile.samples.forEach((id, index) => {
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0));
});
const total = [...selfMicros.values()].reduce((sum, us) => sum + us, 0);

function origin(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1]!;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const own = /\/(src\/[^/]+)\//.exec(url);
  return own ? own[1]! : url;
}

const byFunction = new Map<string, number>();
const byOrigin = new Map<string, number>();
for (const node of profile.nodes) {
  const us = selfMicros.get(node.id) ?? 0;
  if (us === 0) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url
    ? `${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(src|bench)\//, '$1/')}:${lineNumber + 1}`
    : '';
  const key = `${functionName || '(anonymous)'} ${where}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  const o = origin(url, functionName);
  byOrigin.set(o, (byOrigin.get(o) ?? 0) + us);
}

// Inclusive: a sample counts once for every origin and function on its stack, so a
// middleware's share includes what it calls (Node internals, crypto, …).
const parent = new Map<number, number>();
for (const node of profile.nodes)
  for (const child of node.children ?? []) parent.set(child, node.id);
const nodesById = new Map(profile.nodes.map((node) => [node.id, node]));
const inclusiveOrigin = new Map<string, number>();
const inclusiveFunction = new Map<string, number>();
for (const [id, us] of selfMicros) {
  const origins = new Set<string>();
  const functions = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const { functionName, url } = nodesById.get(at)!.callFrame;
    origins.add(origin(url, functionName));
    if (url.includes('/src/') || url.includes('node_modules')) {
      functions.add(
        `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/src\//, 'src/')}`,
      );
    }
  }
  for (const o of origins) inclusiveOrigin.set(o, (inclusiveOrigin.get(o) ?? 0) + us);
  for (const f of functions) inclusiveFunction.set(f, (inclusiveFunction.get(f) ?? 0) + us);
}

const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)}%`;
console.log(`total ${(total / 1e6).toFixed(1)} s sampled\n\nby origin:`);
for (const [name, us] of [...byOrigin].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
  console.log(`${pct(us)}  ${name}`);
}
console.log('\nby origin, inclusive (what runs under it counts too):');
for (const [name, us] of [...inclusiveOrigin].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
  console.log(`${pct(us)}  ${name}`);
}
console.log(`\ntop ${top} functions, inclusive:`);
for (const [name, us] of [...inclusiveFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${pct(us)}  ${name}`);
}
console.log(`\ntop ${top} functions (self time):`);
for (const [name, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${pct(us)}  ${name}`);
}
