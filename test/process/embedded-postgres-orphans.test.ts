import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../ops/service-process';
import { parentOf, processesOf } from './support/processes';

/**
 * A command-line tool (npm run migrate, spool, stats:rebuild) or a jest run holds an embedded
 * PostgreSQL in a process group of its own. Such a process has no handler for Ctrl-C and no
 * 'exit' hook runs when a signal ends it: its server must still not outlive it.
 */

jest.setTimeout(60_000);

const scratch: string[] = [];
const holders: number[] = [];

afterAll(() => {
  // A holder a failed test did not end would keep jest from exiting (its stdout is a pipe).
  for (const pid of holders) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of scratch) {
    for (const pid of serversOn(dir)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A process that starts an embedded server, says so, and waits (as a CLI at work). */
async function holder(): Promise<{ pid: number; dir: string; exited: Promise<void> }> {
  const dir = mkdtempSync('/var/tmp/sw-status-orphan-');
  scratch.push(dir);
  chmodSync(dir, 0o755);
  const script = `
    const { startEmbeddedPostgres } = require(${JSON.stringify(path.join(REPO_ROOT, 'src/db/embedded-postgres.ts'))});
    const { createLogger } = require(${JSON.stringify(path.join(REPO_ROOT, 'src/logger.ts'))});
    startEmbeddedPostgres(createLogger('silent'), { dataDir: ${JSON.stringify(path.join(dir, 'pg'))} })
      .then(() => { process.stdout.write('started\\n'); setInterval(() => {}, 1000); });
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], {
    cwd: REPO_ROOT,
    // A process group of its own, like a command started in a terminal.
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  holders.push(child.pid!);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('started')) resolve();
    });
    void exited.then(() => reject(new Error('the holder exited before its server started')));
  });
  expect(serversOn(dir)).toHaveLength(1);
  return { pid: child.pid!, dir, exited };
}

async function noServerOn(dir: string): Promise<number[]> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    if (serversOn(dir).length === 0) return [];
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return serversOn(dir);
}

test('When Ctrl-C ends a process holding the embedded PostgreSQL, then its server stops too', async () => {
  const { pid, dir, exited } = await holder();
  process.kill(-pid, 'SIGINT'); // the terminal signals the foreground group
  await exited;
  expect(await noServerOn(dir)).toEqual([]);
});

test('When a process holding the embedded PostgreSQL is killed (SIGKILL), then its server stops too', async () => {
  const { pid, dir, exited } = await holder();
  process.kill(pid, 'SIGKILL');
  await exited;
  expect(await noServerOn(dir)).toEqual([]);
});

/**
 * The PIDs of postgres servers (postmasters) whose data directory is below `dir`. A child the
 * server has just forked has its parent's command line until it retitles itself ("postgres:
 * checkpointer"): on a loaded machine it was counted as a second and third server.
 */
function serversOn(dir: string): number[] {
  const pids = processesOf('postgres', (arg) => arg.startsWith(dir));
  return pids.filter((pid) => !pids.includes(parentOf(pid)));
}
