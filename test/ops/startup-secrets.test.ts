import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, freePort, serviceEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * What the process prints when it cannot start goes to the same log pipeline as everything
 * else: it must name the problem without the secrets it was configured with.
 */

const DB_PASSWORD = 'dbpw-startup-7c1f9e2a';

let spoolDir: string;
const running: ServiceProcess[] = [];
beforeAll(async () => {
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-startup-secrets-'));
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((service) => service.kill()));
});
afterAll(async () => {
  await rm(spoolDir, { recursive: true, force: true });
});

test('When start-up fails on a DATABASE_URL that only node-postgres can read, then nothing printed holds its password', async () => {
  // libpq's form for a host given as a parameter (e.g. a Unix socket directory): node-postgres
  // reads it, WHATWG URL does not. Nothing listens on the port, so the migration fails.
  const port = await freePort();
  const url = `postgres://sw:${DB_PASSWORD}@/sw_status?host=127.0.0.1&port=${port}`;
  const service = startService(
    serviceEnv(url, {
      NODE_ENV: 'development',
      PORT: String(await freePort()),
      INTERNAL_PORT: String(await freePort()),
      SPOOL_DIR: path.join(spoolDir, 'a'),
    }),
  );
  running.push(service);
  const { code } = await service.exited;

  expect(code).toBe(1);
  // It did fail where expected (the migration), and said so in one line naming where it looked.
  expect(service.stderr()).toMatch(
    new RegExp(`^DATABASE_URL: cannot reach the database at 127\\.0\\.0\\.1:${port} \\(`),
  );
  expect(service.stderr().trim().split('\n')).toHaveLength(1);
  expect(service.stderr() + service.stdout()).not.toContain(DB_PASSWORD);
}, 60_000);

// (`npm run spool` reads it through the same cliDatabaseUrl, once it has events to replay.)
test.each([
  ['npm run migrate', 'src/db/migrate-cli.ts', []],
  ['npm run stats:rebuild', 'src/stats/rebuild-cli.ts', []],
])(
  'When %s is given a DATABASE_URL node-postgres cannot read, then it refuses it by name in one line, as the service does, without echoing it',
  async (_command, entry, args) => {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', entry, ...args],
          {
            cwd: REPO_ROOT,
            env: {
              PATH: process.env.PATH ?? '',
              NODE_ENV: 'production',
              DATABASE_URL: `postgres://sw:${DB_PASSWORD}@bad host:99999/sw`,
            },
          },
          (error, _stdout, stderr) =>
            resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stderr }),
        );
      },
    );
    expect(code).toBe(1);
    expect(stderr.trim()).toBe(
      'DATABASE_URL: is not a connection string node-postgres can read (host, port 0–65535, %-encoding)',
    );
    expect(stderr).not.toContain(DB_PASSWORD);
  },
);

test.each([
  ['npm run stats:rebuild', 'src/stats/rebuild-cli.ts', []],
  ['npm run feed:reset', 'src/feed/feed-reset-cli.ts', ['--note-only']],
])(
  'When %s cannot reach the database, then it says so in one line naming DATABASE_URL, its host and port, without the password',
  async (_command, entry, args) => {
    const port = await freePort();
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>(
      (resolve) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', entry, ...args],
          {
            cwd: REPO_ROOT,
            env: {
              PATH: process.env.PATH ?? '',
              NODE_ENV: 'production',
              DATABASE_URL: `postgres://sw:${DB_PASSWORD}@127.0.0.1:${port}/sw`,
            },
          },
          (error, _stdout, stderr) =>
            resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stderr }),
        );
      },
    );
    expect(code).toBe(1);
    expect(stderr).toMatch(
      new RegExp(`^DATABASE_URL: cannot reach the database at 127\\.0\\.0\\.1:${port} \\(`),
    );
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).not.toContain(DB_PASSWORD);
  },
);

test('When DATABASE_URL holds a % sequence that is no UTF-8 (a password written raw), then the service exits 1 with one line naming DATABASE_URL, no stack trace and no password', async () => {
  // node-postgres threw "URIError: URI malformed" at the first connection instead.
  const service = startService(
    serviceEnv('postgres://sw:Xk9%e2Bt@127.0.0.1:5432/sw_status', {
      NODE_ENV: 'production',
      PORT: String(await freePort()),
      INTERNAL_PORT: String(await freePort()),
      API_TOKENS: 'production-test-token',
      SPOOL_DIR: path.join(spoolDir, 'percent'),
    }),
  );
  running.push(service);
  expect(await service.exited).toEqual({ code: 1, signal: null });
  expect(service.stderr()).toMatch(/^Invalid configuration:\n {2}- DATABASE_URL: [^\n]*\n?$/);
  expect(service.stderr() + service.stdout()).not.toContain('Xk9');
}, 60_000);
