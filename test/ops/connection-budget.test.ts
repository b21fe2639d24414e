import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { postSignedCallback, productionEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * README "Connections", k8s/app/configmap.yaml and test/deploy/k8s-manifests.test.ts budget
 * `maxReplicas × (DATABASE_POOL_MAX + 1) + Job`: each process holds its pool and one dedicated
 * LISTEN connection (src/feed/feed-signal.ts, opened by src/main.ts), outside the pool. A real
 * production-mode process must hold no more than that.
 */
let database: TestDatabase;
let service: ServiceProcess | undefined;
let spoolDir: string;

beforeAll(async () => {
  database = await createTestDatabase(1);
  spoolDir = mkdtempSync(path.join(os.tmpdir(), 'sw-status-budget-spool-'));
});
afterAll(async () => {
  await service?.kill();
  await database.destroy();
  rmSync(spoolDir, { recursive: true, force: true });
});

test('When a process runs with DATABASE_POOL_MAX=1 under concurrent callbacks, then it holds its pool plus its LISTEN connection, no more (as the README budgets)', async () => {
  const { port, env } = await productionEnv(database.url, spoolDir);
  service = startService({ ...env, DATABASE_POOL_MAX: '1' });
  await service.waitForLog('sw-status listening');
  await service.waitForLog("change feed: listening for other replicas' commits");
  // Use the pool, concurrently, so that it opens all it may.
  const answers = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      postSignedCallback(port, `a1b2c3d4-e5f6-7890-abcd-ef123456789${i}`),
    ),
  );
  expect(answers.map((answer) => answer.status)).toEqual(answers.map(() => 200));

  const dbName = new URL(database.url).pathname.slice(1);
  const admin = new Client({ connectionString: database.url });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ query: string }>(
      `SELECT query FROM pg_stat_activity
        WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
      [dbName],
    );
    // The test file's own pool (createTestDatabase(1)) has never been used: it holds nothing.
    // The pool's one connection and the change feed's LISTEN client.
    expect(rows.length).toBeLessThanOrEqual(2);
    expect(rows.map((r) => r.query)).toContainEqual(expect.stringMatching(/LISTEN|NOTIFY/));
  } finally {
    await admin.end();
  }
});
