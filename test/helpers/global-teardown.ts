import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Client } from 'pg';

export default async function globalTeardown(): Promise<void> {
  const adminUrl = process.env.SW_TEST_ADMIN_URL;
  const template = process.env.SW_TEST_TEMPLATE;
  if (adminUrl && template && !globalThis.swStatusEmbeddedPostgres) {
    // On a shared server (TEST_DATABASE_URL) leave nothing behind.
    const admin = new Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${template}`);
    await admin.end();
  }
  const embedded = globalThis.swStatusEmbeddedPostgres;
  if (embedded) {
    await embedded.stop();
    // The run's own directory (global-setup.ts): the server removed its data, not the folder.
    await rm(path.dirname(embedded.dataDir), { recursive: true, force: true });
  }
}
