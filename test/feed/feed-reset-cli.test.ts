import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { checkFeedEpoch } from '../../src/feed/feed-epoch';
import { createLogger } from '../../src/logger';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * `npm run feed:reset` (src/feed/feed-reset-cli.ts), as its own process against DATABASE_URL:
 * by default a feed reset recorded now (a snapshot restored in place with the pods stopped);
 * `--note-only` the current epoch noted without one (after pg_upgrade, whose new system
 * identifier and timeline 1 would otherwise make the pods reset needlessly).
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const execFileAsync = promisify(execFile);
const logger = createLogger('silent');
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase(2);
});
afterAll(async () => {
  await t?.destroy();
});

async function feedReset(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(
    process.execPath,
    ['--import', 'tsx', 'src/feed/feed-reset-cli.ts', ...args],
    {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: t.url, LOG_LEVEL: 'info' },
    },
  );
  return stdout;
}

async function steps(): Promise<number> {
  const { rows } = await sql<{ steps: number }>`
    SELECT count(*)::int AS steps FROM sw_status_feed_removals`.execute(t.db);
  return rows[0]!.steps;
}

test('When the operator runs feed:reset, then a reset step is recorded, the epoch noted, and one line says so', async () => {
  const before = await steps();
  const out = await feedReset();
  expect(out.trim().split('\n')).toHaveLength(1);
  expect(out).toContain('change feed reset recorded');
  expect(await steps()).toBe(before + 1);
  // Noted: the pods' next check finds nothing to reset again.
  expect(await checkFeedEpoch(t.db, logger)).toBe('unchanged');
}, 60_000);

test('When the epoch changed (pg_upgrade) and the operator runs feed:reset --note-only, then the epoch is noted without a reset and the next check finds it unchanged', async () => {
  await checkFeedEpoch(t.db, logger);
  // pg_upgrade: another system identifier, timeline 1, the same transaction ids.
  await sql`UPDATE sw_status_feed_epoch SET system_identifier = '1', timeline = 7`.execute(t.db);
  const before = await steps();
  const out = await feedReset('--note-only');
  expect(out.trim().split('\n')).toHaveLength(1);
  expect(out).toContain('no reset');
  // It says what it replaced: the operator sees a note after a failover for what it is.
  expect(out).toContain('before: system identifier 1, timeline 7,');
  expect(await steps()).toBe(before);
  expect(await checkFeedEpoch(t.db, logger)).toBe('unchanged');
}, 60_000);

test('When feed:reset is given an unknown argument, then it exits non-zero without touching the feed', async () => {
  const before = await steps();
  await expect(feedReset('--now')).rejects.toMatchObject({ code: 1 });
  expect(await steps()).toBe(before);
}, 60_000);
