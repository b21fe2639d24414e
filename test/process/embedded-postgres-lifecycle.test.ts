import { spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { signJsonBody } from '../../src/signalwire/signing';
import { nativeFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, TEST_TOKEN_SECRET } from '../helpers/test-app';
import { REPO_ROOT, freePort, startService } from '../ops/service-process';
import { processesOf } from './support/processes';
import type { ServiceProcess } from '../ops/service-process';

/**
 * `npm start` on its embedded PostgreSQL, as a person runs it in a terminal: in a checkout of
 * its own (a scratch directory linking to this one's code), with no DATABASE_URL.
 */

jest.setTimeout(60_000);

const scratch: string[] = [];
const running: ServiceProcess[] = [];

afterAll(async () => {
  await Promise.all(running.map((service) => service.kill()));
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A checkout the `postgres` user can enter (mode 755 down to .data), linking to this one. */
function checkout(): string {
  const dir = mkdtempSync('/var/tmp/sw-status-local-');
  scratch.push(dir);
  chmodSync(dir, 0o755);
  for (const name of ['src', 'db', 'node_modules', 'package.json', 'tsconfig.json']) {
    symlinkSync(path.join(REPO_ROOT, name), path.join(dir, name));
  }
  mkdirSync(path.join(dir, '.data'), { mode: 0o755 });
  chmodSync(path.join(dir, '.data'), 0o755);
  return dir;
}

async function npmStart(cwd: string): Promise<{ service: ServiceProcess; port: number }> {
  const port = await freePort();
  const service = startService(
    {
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: String(port),
      INTERNAL_PORT: String(await freePort()),
      PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL,
      SIGNALWIRE_SIGNING_KEYS: TEST_SIGNING_KEY,
      CALLBACK_TOKEN_SECRET: TEST_TOKEN_SECRET,
      SHUTDOWN_DRAIN_MS: '5000',
      SHUTDOWN_GRACE_MS: '20000',
      LOG_LEVEL: 'info',
    },
    // A process group of its own, like a command started in a terminal.
    { cwd, wrapper: ['setsid'] },
  );
  running.push(service);
  return { service, port };
}

test('When Ctrl-C reaches the terminal’s whole process group, then the embedded PostgreSQL stays up for the drain: a callback in flight is committed, not spooled, and the process exits at once', async () => {
  const cwd = checkout();
  const { service, port } = await npmStart(cwd);
  await service.waitForLog('sw-status listening', 40_000);

  // A callback whose body is still arriving when Ctrl-C is pressed: it finishes in the drain.
  const body = JSON.stringify(nativeFields({ id: crypto.randomUUID(), status: 'delivered' }));
  const answered = new Promise<number>((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/callbacks/native',
        agent: false,
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'X-SignalWire-Signature': signJsonBody(
            TEST_SIGNING_KEY,
            `${TEST_PUBLIC_BASE_URL}/callbacks/native`,
            body,
          ),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.write(body.slice(0, 10));
    setTimeout(() => {
      // Ctrl-C: the terminal signals every process of the foreground group at once.
      process.kill(-service.child.pid!, 'SIGINT');
      setTimeout(() => req.end(body.slice(10)), 500);
    }, 300);
  });

  const began = Date.now();
  expect(await answered).toBe(200);
  const { code } = await service.exited;
  expect(code).toBe(0);
  expect(Date.now() - began).toBeLessThan(10_000);
  const drained = service
    .stdout()
    .split('\n')
    .find((line) => line.includes('"msg":"ingest drained"'));
  expect(JSON.parse(drained!).ingest).toMatchObject({ committed: 1, spooled: 0 });
  expect(service.stdout()).not.toContain('stopping with events in the spool');
});

test('When a start is killed while initdb creates the data directory, then the next start creates it afresh and serves', async () => {
  const cwd = checkout();
  const first = await npmStart(cwd);
  // Wait for initdb to be at work on this checkout's data directory, then kill everything.
  for (const deadline = Date.now() + 30_000; initdbsBelow(cwd).length === 0;) {
    if (Date.now() > deadline) throw new Error(`initdb never ran\n${first.service.stdout()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  process.kill(-first.service.child.pid!, 'SIGKILL');
  await first.service.exited;
  for (const pid of initdbsBelow(cwd)) process.kill(pid, 'SIGKILL');

  const second = await npmStart(cwd);
  await Promise.race([
    second.service.waitForLog('sw-status listening', 40_000),
    second.service.exited.then(() => {
      throw new Error(`the second start exited\n${second.service.stderr()}`);
    }),
  ]);
  process.kill(second.service.child.pid!, 'SIGTERM');
  expect((await second.service.exited).code).toBe(0);
});

test('When the data directory was made by another PostgreSQL major, then the start exits 1 with one line that names both versions and what to do', async () => {
  const cwd = checkout();
  const dataDir = path.join(cwd, '.data', 'postgres');
  mkdirSync(dataDir, { mode: 0o700 });
  writeFileSync(path.join(dataDir, 'PG_VERSION'), '16\n');
  const { service } = await npmStart(cwd);
  expect((await service.exited).code).toBe(1);
  const said = service.stderr().trim();
  expect(said.split('\n')).toHaveLength(1);
  expect(said).toContain(`${dataDir} was created by PostgreSQL 16`);
  expect(said).toMatch(/runs PostgreSQL \d+/);
});

test('When a crash left postmaster.pid and its pid is another program’s now, then the start removes it and serves', async () => {
  const cwd = checkout();
  const dataDir = path.join(cwd, '.data', 'postgres');
  const first = await npmStart(cwd);
  await first.service.waitForLog('sw-status listening', 40_000);
  const pidFile = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
  process.kill(first.service.child.pid!, 'SIGTERM');
  expect((await first.service.exited).code).toBe(0);

  // After a power loss the server never removed its postmaster.pid, and after the reboot its
  // pid went to another program of the same user (here a sleep, run as the data's owner).
  const owner = statSync(dataDir);
  const other = spawn('sleep', ['600'], { stdio: 'ignore', uid: owner.uid, gid: owner.gid });
  try {
    const lines = pidFile.split('\n');
    lines[0] = String(other.pid);
    const pidPath = path.join(dataDir, 'postmaster.pid');
    writeFileSync(pidPath, lines.join('\n'), { mode: 0o600 });
    chownSync(pidPath, owner.uid, owner.gid);

    const second = await npmStart(cwd);
    await Promise.race([
      second.service.waitForLog('sw-status listening', 40_000),
      second.service.exited.then(() => {
        throw new Error(`the second start exited\n${second.service.stderr()}`);
      }),
    ]);
    expect(second.service.stdout()).toContain('removing the postmaster.pid a crashed');
    process.kill(second.service.child.pid!, 'SIGTERM');
    expect((await second.service.exited).code).toBe(0);
  } finally {
    other.kill('SIGKILL');
  }
});

test('When a deletion of the data directory was cut short (PG_VERSION gone, other files left), then the start exits 1 with one line naming it and what to do', async () => {
  const cwd = checkout();
  const dataDir = path.join(cwd, '.data', 'postgres');
  const first = await npmStart(cwd);
  await first.service.waitForLog('sw-status listening', 40_000);
  process.kill(first.service.child.pid!, 'SIGTERM');
  expect((await first.service.exited).code).toBe(0);
  rmSync(path.join(dataDir, 'PG_VERSION'));
  rmSync(path.join(dataDir, 'base'), { recursive: true, force: true });

  const { service } = await npmStart(cwd);
  expect((await service.exited).code).toBe(1);
  const said = service.stderr().trim();
  expect(said.split('\n')).toHaveLength(1);
  expect(said).toContain(`${dataDir} holds no complete PostgreSQL cluster`);
  expect(said).toMatch(/move it away or delete it/);
});

/** The PIDs of initdb processes creating a data directory below `dir`. */
function initdbsBelow(dir: string): number[] {
  return processesOf('initdb', (arg) => arg.startsWith('--pgdata=') && arg.includes(dir));
}
