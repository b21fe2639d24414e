import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  InstanceLockedError,
  acquireInstanceLock,
  askHolder,
  findHolder,
} from '../../src/process/instance-lock';
import type { LockHolder } from '../../src/process/instance-lock';

const REPO_ROOT = path.resolve(__dirname, '../..');

let dir: string;
const children: ChildProcess[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-lock-'));
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  }
  await rm(dir, { recursive: true, force: true });
});

/** Another process holding (or trying to hold) the lock: resolves with its first line. */
function holderProcess(): { child: ChildProcess; line: Promise<string> } {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'support', 'hold-lock.ts'), dir],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  const line = new Promise<string>((resolve) => {
    let text = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) resolve(text.slice(0, text.indexOf('\n')));
    });
  });
  return { child, line };
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

const lockFiles = async () =>
  (await readdir(dir)).filter((name) => name.startsWith('.lock')).sort();

test('When a directory is held, then a second taker is refused with who holds it, and can take it once released', async () => {
  const lock = await acquireInstanceLock({ dir, command: 'npm start', details: { port: 8080 } });
  const refused = await acquireInstanceLock({ dir, command: 'npm run migrate' }).catch((e) => e);
  expect(refused).toBeInstanceOf(InstanceLockedError);
  const holder = (refused as InstanceLockedError).holder;
  expect(holder).toMatchObject({
    pid: process.pid,
    hostname: os.hostname(),
    command: 'npm start',
    details: { port: 8080 },
  });
  expect((refused as Error).message).toContain(
    `sw-status pid ${process.pid} (npm start; port 8080) on host ${os.hostname()}`,
  );
  expect(await findHolder(dir)).toEqual(holder);

  await lock.release();
  expect(await findHolder(dir)).toBeUndefined();
  expect(await lockFiles()).toEqual([]);
  const again = await acquireInstanceLock({ dir, command: 'npm run migrate' });
  await again.release();
});

test('When another process holds the directory, then it is refused here, and once that process is killed the directory is taken at once', async () => {
  const other = holderProcess();
  expect(await other.line).toMatch(/^held 1$/);
  const refused = await acquireInstanceLock({ dir, command: 'second' }).catch((e) => e);
  expect(refused).toBeInstanceOf(InstanceLockedError);
  expect((refused as InstanceLockedError).holder.pid).toBe(other.child.pid);
  expect(await askHolder(dir, 'whoami')).toEqual({ pid: other.child.pid });

  // A crash: no clean-up at all, its record and socket file stay behind.
  await kill(other.child);
  expect((await lockFiles()).length).toBe(2);
  const lock = await acquireInstanceLock({ dir, command: 'after the crash' });
  expect(lock.holder.generation).toBe(2);
  // The dead holder's record and socket are gone; only ours remain.
  expect(await lockFiles()).toEqual(['.lock.000000000002', lock.holder.socket].sort());
  await lock.release();
});

test('When a restarted container finds a record with its own hostname and PID, then it knows the holder is dead and takes over', async () => {
  // What a pod restarted on its persistent volume sees: a record written by "PID 1 on this
  // host" — which is now the newcomer itself — with the dead holder's socket file.
  const other = holderProcess();
  await other.line;
  await kill(other.child);
  const [recordName] = (await lockFiles()).filter((name) => !name.endsWith('.sock'));
  const record = JSON.parse(readFileSync(path.join(dir, recordName!), 'utf8')) as LockHolder;
  await writeFile(
    path.join(dir, recordName!),
    JSON.stringify({ ...record, pid: process.pid, hostname: os.hostname() }),
  );

  const lock = await acquireInstanceLock({ dir, command: 'restarted' });
  expect(lock.holder.generation).toBe(2);
  await lock.release();
});

test('When several processes start at once on a directory with a dead holder, then exactly one gets it', async () => {
  const first = holderProcess();
  await first.line;
  await kill(first.child);

  const contenders = Array.from({ length: 4 }, () => holderProcess());
  const lines = await Promise.all(contenders.map((c) => c.line));
  expect(lines.filter((line) => line.startsWith('held'))).toHaveLength(1);
  expect(lines.filter((line) => line.startsWith('refused'))).toHaveLength(3);
  // In-process contenders too: their file operations interleave at every await.
  const winner = contenders.find((_c, i) => lines[i]!.startsWith('held'))!;
  await kill(winner.child);
  const results = await Promise.allSettled(
    Array.from({ length: 10 }, (_, i) => acquireInstanceLock({ dir, command: `contender ${i}` })),
  );
  const won = results.filter((r) => r.status === 'fulfilled');
  expect(won).toHaveLength(1);
  for (const r of results) {
    if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(InstanceLockedError);
  }
  await (
    won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireInstanceLock>>>
  ).value.release();
});

test('When the record comes from another machine, then its heartbeat decides', async () => {
  const foreign: LockHolder = {
    pid: 1,
    hostname: 'sw-status-0',
    bootId: 'another-machine',
    startedAt: new Date().toISOString(),
    command: 'npm start',
    generation: 7,
    socket: '.lock-0123456789abcdef.sock',
  };
  const record = path.join(dir, '.lock.000000000007');
  await writeFile(record, JSON.stringify(foreign));
  const refused = await acquireInstanceLock({ dir, command: 'here', foreignWaitMs: 0 }).catch(
    (e) => e,
  );
  expect(refused).toBeInstanceOf(InstanceLockedError);
  expect(await findHolder(dir)).toEqual(foreign);

  // No heartbeat for longer than foreignStaleMs: that holder is gone.
  const old = new Date(Date.now() - 60_000);
  await utimes(record, old, old);
  const lock = await acquireInstanceLock({ dir, command: 'here' });
  expect(lock.holder.generation).toBe(8);
  await lock.release();
});

test('When the directory path is longer than a socket path may be, then the lock works all the same', async () => {
  // A socket path holds at most 107 bytes; Kubernetes volume paths and temp dirs can exceed it.
  const deep = path.join(dir, 'a'.repeat(60), 'b'.repeat(60));
  await mkdir(deep, { recursive: true });
  const lock = await acquireInstanceLock({ dir: deep, command: 'deep' });
  expect(
    await acquireInstanceLock({ dir: deep, command: 'second' }).catch((e) => e),
  ).toBeInstanceOf(InstanceLockedError);
  lock.handle('ping', async () => 'pong');
  expect(await askHolder(deep, 'ping')).toBe('pong');
  await lock.release();
  expect((await readdir(deep)).filter((name) => name.startsWith('.lock'))).toEqual([]);
  const again = await acquireInstanceLock({ dir: deep, command: 'again' });
  await again.release();
});

test('When a holder on another machine stops its heartbeat, then a newcomer waiting for it takes over once it is stale', async () => {
  // A pod rescheduled onto another node right after its predecessor was killed.
  await writeFile(
    path.join(dir, '.lock.000000000003'),
    JSON.stringify({
      pid: 1,
      hostname: 'sw-status-0',
      bootId: 'another-machine',
      startedAt: new Date().toISOString(),
      command: 'node dist/main.js',
      generation: 3,
      socket: '.lock-0123456789abcdef.sock',
    }),
  );
  const lock = await acquireInstanceLock({ dir, command: 'rescheduled', foreignStaleMs: 400 });
  expect(lock.holder.generation).toBe(4);
  await lock.release();
});
