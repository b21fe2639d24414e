import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
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
 * The README runs `node dist/ingest/spool-cli.js replay …` as a Job or a pod with the
 * service's image, which has no init: node is PID 1 there, and PID 1 ignores SIGTERM unless it
 * listens for it — a deleted Job would run on until SIGKILL, saying nothing. The command stops
 * on SIGTERM and SIGINT instead, says what is left, and loses nothing acknowledged: a replay
 * stopped half-way and run again stores every event exactly once.
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
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-signals-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function events(count: number) {
  return Array.from({ length: count }, () =>
    normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false }),
  );
}

async function messagesStored(): Promise<number> {
  const { rows } = await database.pool.query<{ n: string }>('SELECT count(*) AS n FROM messages');
  return Number(rows[0]!.n);
}

test('When a replay Job (node as PID 1) waiting for the database is deleted (SIGTERM), then it stops within seconds, saying what is left, with exit 143', async () => {
  const spool = await openSpool({ dir, logger });
  await spool.append(events(1));
  await spool.close();
  const down = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;

  // node as PID 1 of a new PID namespace: unshare's only child.
  const child = spawn(
    'unshare',
    [
      // A user namespace first: as any user, not only root, it may make a PID namespace.
      '--user',
      '--map-root-user',
      '--pid',
      '--fork',
      process.execPath,
      ...['--import', 'tsx', 'src/ingest/spool-cli.ts', 'replay', dir, '--timeout', '40'],
    ],
    {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: down },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  const waiting = new Promise<void>((resolve) =>
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.includes('waiting for')) resolve();
    }),
  );
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.on('exit', (code) => resolve({ code, at: Date.now() })),
  );
  await waiting;
  const nodePid = Number(
    readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0],
  );
  const signalled = Date.now();
  process.kill(nodePid, 'SIGTERM');
  const { code, at } = await exited;

  expect(at - signalled).toBeLessThan(10_000);
  expect(code).toBe(143);
  expect(stdout).toContain(
    `stopped by SIGTERM before replaying: 1 events left, 0 dead letters in ${dir}: run the command again`,
  );
}, 90_000);

const TOTAL = 4_000;

test('When a replay is stopped by Ctrl-C half-way and run again, then every event is stored exactly once and nothing is left', async () => {
  const spool = await openSpool({ dir, logger, segmentMaxEvents: 400 });
  // Many replay chunks (500 events, a segment of 400 at most): the chunk committing when the
  // signal lands, and any the drain's 50 ms look lets start, still leave most of the spool.
  // With 1 200 on a fast PostgreSQL (CI's 15), the stop came after the last chunk.
  const all = events(TOTAL);
  for (let i = 0; i < all.length; i += 100) await spool.append(all.slice(i, i + 100));
  await spool.close();

  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/ingest/spool-cli.ts', 'replay', dir],
    {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: database.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  while ((await messagesStored()) <= 100) await new Promise((resolve) => setTimeout(resolve, 20));
  child.kill('SIGINT');

  expect(await exited).toBe(130);
  expect(stdout).toMatch(/replayed \d+ events .*; \d+ left, 0 dead letters in /);
  expect(stdout).toContain('stopped by SIGINT: run the command again');
  expect(await messagesStored()).toBeLessThan(TOTAL);

  const again = await runSpoolCommand(['replay', dir], { DATABASE_URL: database.url });
  expect(again.stderr).toBe('');
  expect(again.code).toBe(0);
  const { rows } = await database.pool.query<{ m: string; e: string }>(
    'SELECT (SELECT count(*) FROM messages) AS m, (SELECT count(*) FROM status_events) AS e',
  );
  expect(Number(rows[0]!.m)).toBe(TOTAL);
  expect(Number(rows[0]!.e)).toBe(TOTAL);
  expect((await readdir(dir)).filter((name) => name.startsWith('spool-'))).toEqual([]);
}, 120_000);
