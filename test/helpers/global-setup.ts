import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createDb, withDatabase } from '../../src/db/database';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres';
import type { EmbeddedPostgres } from '../../src/db/embedded-postgres';
import { migrateToLatest } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';

declare global {
  var swStatusEmbeddedPostgres: EmbeddedPostgres | undefined;
}

/**
 * The embedded test cluster does not wait for the disk at commit. Tests prove behaviour, not
 * durability against power loss (a killed server process loses nothing either way: its writes
 * are in the OS's cache), and a commit waiting on fsync ties every timing in the suite to the
 * disk. Late in one CI run (its fourth pass of the suite) a burst of callbacks was answered
 * 503 three times over by the group-commit recorder, which without a spool refuses a batch not
 * committed within 3 s (test/api/concurrency.test.ts through
 * test/ingest/api-through-production-stack.test.ts): commits stalled for about ten seconds.
 * A disk flush stalled under the run's writes is the likely cause (nothing in the code
 * reproduces it: stopping PostgreSQL for 6 s mid-burst loses nothing; 12 s refuses 5 of 600).
 * The service's own local run (npm start) keeps PostgreSQL's defaults, and the second CI leg
 * runs the suite on a PostgreSQL that syncs.
 */
const TEST_CLUSTER_SETTINGS = { fsync: 'off' } as const;

/**
 * Starts the run's PostgreSQL — TEST_DATABASE_URL when set, otherwise an embedded server in
 * a temporary directory the `postgres` user can reach — and migrates a template database
 * that each test file clones (test/helpers/test-database.ts).
 */
export default async function globalSetup(): Promise<void> {
  let adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    const dataDir = path.join(
      os.tmpdir(),
      `sw-status-test-${randomBytes(4).toString('hex')}`,
      'pg',
    );
    const embedded = await startEmbeddedPostgres(createLogger('warn'), {
      dataDir,
      ephemeral: true,
      settings: TEST_CLUSTER_SETTINGS,
    });
    globalThis.swStatusEmbeddedPostgres = embedded;
    adminUrl = embedded.url;
  }
  const template = `sw_status_template_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${template}`);
  } finally {
    await admin.end();
  }
  const { db } = createDb(withDatabase(adminUrl, template), 1);
  try {
    await migrateToLatest(db);
  } finally {
    await db.destroy();
  }
  process.env.SW_TEST_ADMIN_URL = adminUrl;
  process.env.SW_TEST_TEMPLATE = template;
}
