import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { cxmlFields } from '../helpers/callbacks';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { runSpoolCommand } from './support/spool-command';

/**
 * README: `npm run spool -- status  # events and dead letters in SPOOL_DIR, and who holds it`.
 * On a directory nobody holds — an orphaned claim, where an operator runs it first, as
 * SwStatusSpoolOrphaned's description says — it reports and never replays into DATABASE_URL.
 */
const logger = createLogger('silent');
let dir: string;
let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(async () => {
  await database.destroy();
});
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-status-'));
  const spool = await openSpool({ dir, logger });
  const event = () =>
    normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
  await spool.append([event(), event()]);
  await spool.close();
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('When status is run on a spool nobody holds, then it reports its events and leaves them in it, with the database reachable', async () => {
  const status = await runSpoolCommand(['status', dir, '--timeout', '20'], {
    DATABASE_URL: database.url,
  });
  expect(status.stdout).toContain('2 events');
  expect(status.stdout).not.toMatch(/replayed/);
  const spool = await openSpool({ dir, logger });
  try {
    expect(spool.depth()).toBe(2);
  } finally {
    await spool.close();
  }
  expect(status.code).toBe(0);
}, 60_000);

test('When SPOOL_DIR is blank (white space only) and no DIR is given, then the command refuses it by name, as the service does, instead of reading the default directory', async () => {
  const status = await runSpoolCommand(['status', '--timeout', '20'], {
    DATABASE_URL: database.url,
    SPOOL_DIR: '   ',
  });
  expect(status.stderr).toContain('SPOOL_DIR: must not be blank');
  expect(status.stdout).toBe('');
  expect(status.code).toBe(1);
}, 60_000);

test('When status is run without DIR, then it reads SPOOL_DIR as the service does (surrounding spaces trimmed)', async () => {
  const status = await runSpoolCommand(['status', '--timeout', '20'], {
    DATABASE_URL: database.url,
    SPOOL_DIR: ` ${dir} `,
  });
  expect(status.stdout).toContain('2 events');
  expect(status.code).toBe(0);
}, 60_000);
