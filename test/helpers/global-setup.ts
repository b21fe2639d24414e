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
