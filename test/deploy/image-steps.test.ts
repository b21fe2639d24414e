import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/db/free-port';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * The Dockerfile's steps without Docker (no daemon here): in a temporary copy, the build
 * stage compiles, the production-dependency stage installs with `npm ci --omit=dev`, and the
 * runtime stage — only those dependencies, `dist/` and `db/`, and node without npm — migrates
 * with the documented command and starts with NODE_ENV=production until /readyz answers, as
 * PID 1, UID 1000, on a read-only root (containerLike), then stops on SIGTERM with exit 0.
 * Run on whatever Node runs the tests, so CI's Node 24 pass is the image's runtime.
 */
const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');
const node = process.execPath;

jest.setTimeout(180_000);

let work: string;
let database: TestDatabase;
let service: ChildProcess | undefined;

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-image-'));
  database = await createTestDatabase(1);
});

afterAll(async () => {
  if (service && service.exitCode === null) service.kill('SIGKILL');
  await database.destroy();
  rmSync(work, { recursive: true, force: true });
});

test('When the image steps run in a clean copy, then the production install and the build start the service and /readyz answers', async () => {
  // Build stage: COPY package files, tsconfigs and src; `npm ci` (the lockfile's tree is the
  // one already installed here, linked instead of downloaded again); `npm run build`.
  const build = path.join(work, 'build');
  for (const file of [
    'package.json',
    'package-lock.json',
    'tsconfig.json',
    'tsconfig.build.json',
    'src',
  ]) {
    cpSync(path.join(ROOT, file), path.join(build, file), { recursive: true });
  }
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(build, 'node_modules'));
  await run('npm', ['run', 'build'], { cwd: build });

  // Production-dependency stage: a real `npm ci --omit=dev` from the lockfile.
  const app = path.join(work, 'app');
  for (const file of ['package.json', 'package-lock.json']) {
    cpSync(path.join(ROOT, file), path.join(app, file));
  }
  await run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], { cwd: app });

  // Runtime stage: those dependencies, dist/ and db/ — nothing else.
  cpSync(path.join(build, 'dist'), path.join(app, 'dist'), { recursive: true });
  cpSync(path.join(ROOT, 'db'), path.join(app, 'db'), { recursive: true });
  const [port, internalPort] = [await freePort(), await freePort()];
  const container = await containerLike(app);
  const env = {
    // The image has node and no npm: nothing else is on the runtime's PATH.
    PATH: container.bin,
    NODE_ENV: 'production',
    DATABASE_URL: database.url,
    PORT: String(port),
    INTERNAL_PORT: String(internalPort),
    HOST: '127.0.0.1',
    PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
    SIGNALWIRE_SPACE_URL: 'http://127.0.0.1:9',
    SIGNALWIRE_SIGNING_KEYS: 'PSK_image_test_key',
    CALLBACK_TOKEN_SECRET: 'image-test-callback-token-secret',
    API_TOKENS: 'image-test-token',
    SPOOL_DIR: container.spool,
    TMPDIR: container.tmp,
    SHUTDOWN_DELAY_MS: '0',
    LOG_LEVEL: 'warn',
  };

  // The documented migration command: only DATABASE_URL is needed.
  await run(node, ['dist/db/migrate-cli.js'], {
    cwd: app,
    env: { PATH: env.PATH, NODE_ENV: 'production', DATABASE_URL: database.url },
  });

  const [command, ...args] = container.command(['node', 'dist/main.js']);
  const started = spawn(command!, args, { cwd: app, env, stdio: ['ignore', 'ignore', 'pipe'] });
  service = started;
  let stderr = '';
  started.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    started.on('exit', (code) => resolve(code)),
  );

  const ready = await waitForReady(`http://127.0.0.1:${port}/readyz`, exited);
  expect({ ready, stderr }).toEqual({ ready: true, stderr: '' });
  const internal = await fetch(`http://127.0.0.1:${internalPort}/readyz`);
  expect(internal.status).toBe(200);
  await internal.arrayBuffer();
  const query = await fetch(`http://127.0.0.1:${internalPort}/v1/messages`, {
    headers: { authorization: 'Bearer image-test-token' },
  });
  expect(query.status).toBe(200);
  await query.arrayBuffer();
  // The status page from the bundle `npm run build` made (the runtime has no esbuild).
  const page = await fetch(`http://127.0.0.1:${internalPort}/`);
  expect(page.status).toBe(200);
  const script = /<script>([\s\S]*)<\/script>/.exec(await page.text())?.[1];
  expect(script).toBe(readFileSync(path.join(app, 'dist', 'page', 'assets', 'app.js'), 'utf8'));
  const scriptHash = createHash('sha256').update(script!).digest('base64');
  expect(page.headers.get('content-security-policy')).toContain(
    `script-src 'sha256-${scriptHash}'`,
  );

  // As the container runtime sees it: PID 1 of its namespace, UID 1000, read-only root.
  const pid = container.isolated ? childOf(started.pid!) : started.pid!;
  if (container.isolated) {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    expect(status).toMatch(/^NSpid:\s+\d+\s+1$/m);
    expect(status).toMatch(/^Uid:\s+1000\s+1000\s+1000\s+1000$/m);
    const root = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
      .split('\n')
      .find((line) => line.split(' ')[4] === '/');
    expect(root?.split(' ')[5]?.split(',')).toContain('ro');
  } else {
    console.warn('not root or no unshare/setpriv: the image steps ran without isolation');
  }

  process.kill(pid, 'SIGTERM');
  expect(await exited).toBe(0);
});

/**
 * How the runtime stage runs, as near the real container as this machine allows: as root with
 * util-linux, the service is PID 1 of a new PID namespace (where the kernel drops signals it
 * has no handler for), runs as UID 1000 with no supplementary groups and no new privileges, on
 * a root filesystem remounted read-only in a private mount namespace but for the spool and a
 * temporary directory (the pod's volumes). Elsewhere it runs as a plain child process.
 */
async function containerLike(app: string) {
  const spool = path.join(work, 'volumes', 'spool');
  const tmp = path.join(work, 'volumes', 'tmp');
  const bin = path.join(work, 'bin');
  for (const dir of [spool, tmp, bin]) mkdirSync(dir, { recursive: true });
  const tools = ['unshare', 'setpriv', 'mount'].map(which);
  const isolated =
    os.userInfo().uid === 0 &&
    tools.every(Boolean) &&
    (await run('unshare', ['--pid', '--fork', '--mount', 'true']).then(
      () => true,
      () => false,
    ));
  if (!isolated) {
    symlinkSync(node, path.join(bin, 'node'));
    return { isolated, spool, tmp, bin, command: (argv: string[]) => argv };
  }
  const [unshare, setpriv, mount] = tools as string[];
  // The service user owns its volumes and can read the application and node (copied when the
  // one running the tests lives where UID 1000 cannot reach it).
  for (const dir of [spool, tmp]) chownSync(dir, 1000, 1000);
  for (let dir = app; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (dir.startsWith(work)) chmodSync(dir, 0o755);
  }
  chmodSync(path.join(work, 'volumes'), 0o755);
  chmodSync(bin, 0o755);
  const asServiceUser = [
    setpriv!,
    '--reuid=1000',
    '--regid=1000',
    '--clear-groups',
    '--no-new-privs',
  ];
  const reachable = await run(asServiceUser[0]!, [...asServiceUser.slice(1), node, '-e', '0']).then(
    () => true,
    () => false,
  );
  if (reachable) symlinkSync(node, path.join(bin, 'node'));
  else copyFileSync(node, path.join(bin, 'node'));
  const script = [
    `${mount} --bind ${spool} ${spool}`,
    `${mount} --bind ${tmp} ${tmp}`,
    `${mount} -o remount,bind,ro /`,
    `exec ${asServiceUser.join(' ')} "$@"`,
  ].join(' && ');
  return {
    isolated,
    spool,
    tmp,
    bin,
    command: ([program, ...rest]: string[]) => [
      unshare!,
      '--pid',
      '--fork',
      '--kill-child',
      '--mount',
      '--mount-proc',
      '/bin/sh',
      '-c',
      script,
      'sh',
      path.join(bin, program!),
      ...rest,
    ],
  };
}

function which(tool: string): string | undefined {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    if (existsSync(path.join(dir, tool))) return path.join(dir, tool);
  }
  return undefined;
}

/** The first child of `pid` (the service inside `unshare`), as seen from here. */
function childOf(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0]);
}

async function waitForReady(url: string, exited: Promise<number | null>): Promise<boolean> {
  let gone = false;
  void exited.then(() => (gone = true));
  for (let attempt = 0; attempt < 300 && !gone; attempt++) {
    try {
      const res = await fetch(url);
      // Read to the end: an unread answer keeps its socket open after the test.
      await res.arrayBuffer();
      if (res.status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}
