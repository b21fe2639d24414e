import { createTestApp } from './test-app';
import type { TestApp } from './test-app';

/**
 * The service on a database whose TimeZone is not UTC, as a self-hosted PostgreSQL often is (it
 * takes the host's zone): `t` is a replica whose connections started after the change; close
 * both with `close()`.
 */
export async function startOnNonUtcDatabase(
  zone = 'America/New_York',
): Promise<{ t: TestApp; close(): Promise<void> }> {
  const owner = await createTestApp();
  const { rows } = await owner.database.pool.query<{ name: string }>(
    'SELECT current_database() AS name',
  );
  await owner.database.pool.query(`ALTER DATABASE ${rows[0]!.name} SET timezone = '${zone}'`);
  const t = await createTestApp({}, { database: owner.database });
  return {
    t,
    async close() {
      await t.close();
      await owner.close();
    },
  };
}
