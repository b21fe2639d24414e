import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * `node dist/stats/rebuild-cli.js` runs as a Job with the service's image, which has no init:
 * node is PID 1 there and ignores SIGTERM unless it listens for it, so a deleted Job would run
 * on until SIGKILL. The rebuild is one transaction, rolled back when its connection closes:
 * the command just ends on SIGTERM or SIGINT, saying so.
 */

const REPO_ROOT = path.resolve(__dirname, '../..');
// stats.repository.ts's rollup lock, which a rebuild waits for while a fold holds it.
const ROLLUP_LOCK = 0x73777374;

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(async () => {
  await database.destroy();
});

test('When a rebuild Job (node as PID 1) is deleted (SIGTERM) while the rebuild waits, then it stops within seconds with exit 143', async () => {
  const folder = await database.pool.connect();
  try {
    await folder.query('SELECT pg_advisory_lock($1)', [ROLLUP_LOCK]);
    // node as PID 1 of a new PID namespace: unshare's only child. A user namespace first: as
    // any user, not only root, it may make a PID namespace.
    const child = spawn(
      'unshare',
      [
        ...['--user', '--map-root-user', '--pid', '--fork'],
        ...[process.execPath, '--import', 'tsx', 'src/stats/rebuild-cli.ts'],
      ],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: database.url, LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
      child.on('exit', (code) => resolve({ code, at: Date.now() })),
    );
    // The rebuild waits behind the held rollup lock.
    for (;;) {
      const { rows } = await database.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND query LIKE '%pg_advisory_lock%'`,
      );
      if (Number(rows[0]!.n) > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const nodePid = Number(
      readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0],
    );
    const signalled = Date.now();
    process.kill(nodePid, 'SIGTERM');
    const { code, at } = await exited;

    expect(at - signalled).toBeLessThan(10_000);
    expect(code).toBe(143);
    expect(output).toContain('rebuild stopped by SIGTERM: its transaction rolls back');
  } finally {
    await folder.query('SELECT pg_advisory_unlock($1)', [ROLLUP_LOCK]);
    folder.release();
  }
}, 90_000);
