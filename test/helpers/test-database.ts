import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { createDb, withDatabase } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { eventually } from './eventually';

export interface TestDatabase extends DatabaseHandle {
  url: string;
  /** Closes the pool and drops the database. */
  destroy(): Promise<void>;
}

/**
 * A fresh database cloned from the run's migrated template: one per test file.
 * `migrated: false` gives an empty one, as a release finds a database nobody has migrated.
 */
export async function createTestDatabase(
  poolSize = 10,
  { migrated = true }: { migrated?: boolean } = {},
): Promise<TestDatabase> {
  const adminUrl = required('SW_TEST_ADMIN_URL');
  const name = `sw_status_test_${randomBytes(6).toString('hex')}`;
  const template = migrated ? ` TEMPLATE ${required('SW_TEST_TEMPLATE')}` : '';
  await adminQuery(adminUrl, `CREATE DATABASE ${name}${template}`);
  const url = withDatabase(adminUrl, name);
  const handle = createDb(url, poolSize);
  return {
    ...handle,
    url,
    async destroy() {
      await handle.db.destroy();
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/** Runs one statement as the test run's administrator (roles, databases, their settings). */
export function asAdmin(statement: string): Promise<void> {
  return adminQuery(required('SW_TEST_ADMIN_URL'), statement);
}

/**
 * Ends every session of one database (as a failover or a restart would) and returns once they
 * are gone. pg_terminate_backend only signals: a statement sent at once could still meet a
 * dying connection, which the service reads as "connection lost", whatever the test is about.
 * Sessions opened meanwhile (a readiness probe's) are left alone: only the ended ones are
 * waited for, by pid.
 */
export async function endSessions(name: string, timeoutMs = 10_000): Promise<void> {
  const admin = new Client({ connectionString: required('SW_TEST_ADMIN_URL') });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = $1 AND pid <> pg_backend_pid()`,
      [name],
    );
    const ended = rows.map((row) => row.pid);
    await eventually(
      async () =>
        (await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1)', [ended]))
          .rowCount === 0,
      `the sessions of ${name} ended`,
      timeoutMs,
    );
  } finally {
    await admin.end();
  }
}

async function adminQuery(adminUrl: string, statement: string): Promise<void> {
  // Two files cloning the template at the same instant can collide; a short retry settles it.
  for (let attempt = 1; ; attempt++) {
    const client = new Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(statement);
      return;
    } catch (error) {
      if (attempt >= 5 || (error as { code?: string }).code !== '55006') throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    } finally {
      await client.end();
    }
  }
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through jest (globalSetup)`);
  return value;
}
