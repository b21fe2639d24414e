import { spawn } from 'node:child_process';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { freePort } from '../../src/db/free-port';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { cxmlFields } from '../helpers/callbacks';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { runSpoolCommand } from './support/spool-command';

/**
 * Who holds the directory decides what the spool command may do, and what it tells the
 * operator must be true: a `replay` still waiting for the database runs right here and answers
 * the commands run beside it; a holder that answers but is still starting is said to be
 * starting; and a lock record from another machine — a copy off a dead node looks just like a
 * live holder there until its heartbeat goes stale — is waited out, not obeyed.
 */

const REPO_ROOT = path.resolve(__dirname, '../..');
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

let dir: string;
let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(async () => {
  await database.destroy();
});
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-holder-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function spoolEvents(count: number, deadLetters = 0): Promise<void> {
  const spool = await openSpool({ dir, logger });
  const event = () =>
    normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
  await spool.append(Array.from({ length: count }, event));
  for (let i = 0; i < deadLetters; i++) await spool.deadLetter(event(), '23514 check violation');
  await spool.close();
}

/** A DATABASE_URL nothing listens at: the outage that left the spool behind is not over. */
async function downDatabase(): Promise<string> {
  return `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
}

/**
 * Runs `replay` on a database that is down, and `besides` once it says it waits for it; then
 * stops it (SIGTERM), so that it is not releasing the directory while `besides` asks it.
 */
async function besideWaitingReplay(
  besides: (down: string) => Promise<void>,
): Promise<number | null> {
  const down = await downDatabase();
  const replay = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/ingest/spool-cli.ts', 'replay', dir, '--timeout', '120'],
    {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: down },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = new Promise<number | null>((resolve) => replay.on('exit', resolve));
  try {
    let stdout = '';
    await new Promise<void>((resolve) =>
      replay.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        if (stdout.includes('waiting for')) resolve();
      }),
    );
    await besides(down);
  } finally {
    replay.kill('SIGTERM');
  }
  return exited;
}

test('When `spool status` runs beside a replay still waiting for the database, then that replay answers with what it holds and that it waits', async () => {
  await spoolEvents(3);
  let status: Awaited<ReturnType<typeof runSpoolCommand>> | undefined;

  const replay = await besideWaitingReplay(async (down) => {
    status = await runSpoolCommand(['status', dir], { DATABASE_URL: down });
  });

  expect(replay).toBe(143); // stopped by the test: the database never came back
  expect(status!.stderr).toBe('');
  expect(status!.code).toBe(0);
  expect(status!.stdout).toMatch(
    /is held by sw-status pid \d+ \(.*spool-cli.*\).*: 3 events to replay, 0 dead letters; waiting for the database .*127\.0\.0\.1.*before replaying/,
  );
}, 60_000);

test('When `spool requeue-dead-letters` runs beside a replay still waiting for the database, then that replay requeues them into what it will replay', async () => {
  await spoolEvents(2, 1);
  let requeue: Awaited<ReturnType<typeof runSpoolCommand>> | undefined;
  let status: Awaited<ReturnType<typeof runSpoolCommand>> | undefined;

  await besideWaitingReplay(async (down) => {
    requeue = await runSpoolCommand(['requeue-dead-letters', dir], { DATABASE_URL: down });
    status = await runSpoolCommand(['status', dir], { DATABASE_URL: down });
  });

  expect(requeue!.stderr).toBe('');
  expect(requeue!.code).toBe(0);
  expect(requeue!.stdout).toContain('requeued 1 dead letters into the spool of sw-status pid');
  expect(status!.stdout).toContain('3 events to replay, 0 dead letters');
}, 60_000);

test('When the holder answers but has not registered the request yet, then the command says it is still starting, not that it "does not answer here"', async () => {
  // A holder of the lock with none of the spool's requests: a service between taking the
  // directory and registering them.
  const holder = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(REPO_ROOT, 'test', 'process', 'support', 'hold-lock.ts'), dir],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise((resolve) => holder.once('exit', resolve));
  try {
    await new Promise<void>((resolve) =>
      holder.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        if (chunk.includes('held')) resolve();
      }),
    );

    const status = await runSpoolCommand(['status', dir]);

    expect(status.code).toBe(1);
    expect(status.stderr).toMatch(
      /is held by sw-status pid \d+ \(test holder\).*, which is still starting and cannot answer status yet: run the command again in a moment\n$/,
    );
    expect(status.stderr).not.toContain('does not answer here');
  } finally {
    holder.kill('SIGKILL');
    await exited;
  }
}, 60_000);

test('When replay finds a fresh lock record from another machine (a spool copied off a dead node), then it says so, waits for the heartbeat to go stale and replays', async () => {
  await spoolEvents(2);
  // What `cp -r` of a dead pod's volume leaves: its holder's record, from another machine
  // (another boot id), with the copy's mtime; no process anywhere holds it. Copied 25 s ago,
  // so its heartbeat goes stale (30 s) within the test.
  const record = path.join(dir, '.lock.000000000001');
  await writeFile(
    record,
    `${JSON.stringify({
      pid: 1,
      hostname: 'sw-status-0',
      bootId: '00000000-0000-0000-0000-000000000000',
      startedAt: new Date(Date.now() - 3_600_000).toISOString(),
      command: 'node dist/main.js',
      generation: 1,
      socket: '.lock-0123456789abcdef.sock',
    })}\n`,
  );
  const copied = new Date(Date.now() - 25_000);
  await utimes(record, copied, copied);

  const replay = await runSpoolCommand(['replay', dir, '--timeout', '60'], {
    DATABASE_URL: database.url,
  });

  expect(replay.stderr).toBe('');
  expect(replay.stdout).toMatch(
    /is held by sw-status pid 1 \(node dist\/main\.js\) on host sw-status-0 .*, a process on another machine: waiting up to 30 s for its heartbeat to stop/,
  );
  expect(replay.stdout).not.toContain('nothing to do');
  expect(replay.stdout).toContain('replayed 2 events');
  expect(replay.code).toBe(0);
  const { rows } = await database.pool.query<{ n: string }>('SELECT count(*) AS n FROM messages');
  expect(Number(rows[0]!.n)).toBe(2);
}, 90_000);

test('When the lock record from another machine keeps its heartbeat, then replay gives up saying that holder is on another host and may be live', async () => {
  await spoolEvents(1);
  const record = path.join(dir, '.lock.000000000001');
  await writeFile(
    record,
    `${JSON.stringify({
      pid: 7,
      hostname: 'sw-status-1',
      bootId: '00000000-0000-0000-0000-000000000001',
      startedAt: new Date().toISOString(),
      command: 'node dist/main.js',
      generation: 1,
      socket: '.lock-fedcba9876543210.sock',
    })}\n`,
  );
  // Its holder's heartbeat, as a live service on the other machine keeps it.
  const heartbeat = setInterval(() => {
    const now = new Date();
    void utimes(record, now, now).catch(() => undefined);
  }, 1_000);
  try {
    const replay = await runSpoolCommand(['replay', dir, '--timeout', '60'], {
      DATABASE_URL: database.url,
    });

    expect(replay.code).toBe(1);
    expect(replay.stderr).toMatch(
      /is in use by sw-status pid 7 \(node dist\/main\.js\) on host sw-status-1 .*, on another host, whose heartbeat did not stop within 30 s: it may be live/,
    );
    expect(replay.stdout).not.toContain('replaying');
  } finally {
    clearInterval(heartbeat);
  }
}, 90_000);

test('When the holder lets the directory go while `spool status` waits for its answer, then the command says so at once and exits 1', async () => {
  const held = await openSpool({ dir, logger, command: 'npm start' });
  let entered!: () => void;
  const asked = new Promise<void>((resolve) => (entered = resolve));
  // A holder that takes the request up and is stopped (SIGTERM, a rollout) before it answers.
  held.lock.handle('status', async () => {
    entered();
    return new Promise(() => undefined);
  });
  const status = runSpoolCommand(['status', dir]);
  await asked;

  await held.close();

  const { code, stderr } = await status;
  expect(stderr).toMatch(
    /was held by sw-status pid \d+ \(npm start\).*, which let it go before answering status: run `status`, then the command again if need be\n$/,
  );
  expect(code).toBe(1);
}, 60_000);

test('When the holder is stopped (the kernel still connects to its socket), then `spool status` gives up within seconds saying it does not answer', async () => {
  const holder = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(REPO_ROOT, 'test', 'process', 'support', 'hold-lock.ts'), dir],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise((resolve) => holder.once('exit', resolve));
  try {
    await new Promise<void>((resolve) =>
      holder.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        if (chunk.includes('held')) resolve();
      }),
    );
    holder.kill('SIGSTOP');

    const status = await runSpoolCommand(['status', dir]);

    expect(status.code).toBe(1);
    expect(status.stderr).toMatch(
      /is held by sw-status pid \d+ \(test holder\).*, which does not answer \(the holder did not take the request up within 10000 ms\)\n$/,
    );
  } finally {
    holder.kill('SIGKILL');
    await exited;
  }
}, 40_000);
