import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/db/embedded-postgres';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * The Dockerfile's steps without Docker (no daemon here): in a temporary copy, the build
 * stage compiles, the production-dependency stage installs with `npm ci --omit=dev`, and the
 * runtime stage — only those dependencies, `dist/` and `db/` — migrates with the documented
 * command and starts with NODE_ENV=production until /readyz answers. Run on whatever Node
 * runs the tests, so CI's Node 24 pass is the image's runtime.
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
  const env = {
    PATH: process.env.PATH ?? '',
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
    SPOOL_DIR: path.join(work, 'spool'),
    SHUTDOWN_DELAY_MS: '0',
    LOG_LEVEL: 'warn',
  };

  // The documented migration command: only DATABASE_URL is needed.
  await run(node, ['dist/db/migrate-cli.js'], {
    cwd: app,
    env: { PATH: env.PATH, NODE_ENV: 'production', DATABASE_URL: database.url },
  });

  const started = spawn(node, ['dist/main.js'], {
    cwd: app,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
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
  const query = await fetch(`http://127.0.0.1:${internalPort}/v1/messages`, {
    headers: { authorization: 'Bearer image-test-token' },
  });
  expect(query.status).toBe(200);

  started.kill('SIGTERM');
  expect(await exited).toBe(0);
});

async function waitForReady(url: string, exited: Promise<number | null>): Promise<boolean> {
  let gone = false;
  void exited.then(() => (gone = true));
  for (let attempt = 0; attempt < 300 && !gone; attempt++) {
    try {
      if ((await fetch(url)).status === 200) return true;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}
