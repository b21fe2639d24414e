import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { reachableDataDir } from '../../src/db/embedded-postgres';

/**
 * initdb takes the cluster's encoding from the locale; under the POSIX locale (LANG unset,
 * usual in containers and CI) it used to create a SQL_ASCII cluster, which refuses text that
 * production's UTF8 databases accept (`npm test` failed on a fresh clone). The embedded server
 * must be UTF8 whatever the caller's locale.
 */

const REPO_ROOT = path.resolve(__dirname, '../..');

test('When the embedded PostgreSQL is created with LANG and LC_* unset, then its cluster is UTF8', async () => {
  const base = await mkdtemp(path.join(os.tmpdir(), 'sw-status-locale-'));
  try {
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          path.join(__dirname, 'support', 'embedded-encoding.ts'),
          path.join(base, 'pg'),
        ],
        // No locale at all: only what the process needs to run.
        {
          cwd: REPO_ROOT,
          env: { PATH: process.env.PATH ?? '' },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`exit ${code}`))));
    });
    expect(JSON.parse(output)).toEqual({ encoding: 'UTF8', escaped: 'é' });
    // Run as root from a directory the postgres user cannot enter (mkdtemp: mode 700), the
    // throw-away server was placed below /var/lib/sw-status: nothing of it stays there.
    const preferred = path.join(base, 'pg');
    const placed = reachableDataDir(preferred);
    if (placed !== preferred) expect(existsSync(path.dirname(placed))).toBe(false);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}, 60_000);
