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
  await globalThis.swStatusEmbeddedPostgres?.stop();
}
