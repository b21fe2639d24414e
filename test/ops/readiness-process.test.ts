import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDb } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { createDisposablePostgres } from '../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../ingest/support/disposable-postgres';
import { eventually } from '../helpers/eventually';
import { freePort, launchProductionService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * Readiness of the real process in production mode, as the kubelet probes it: never ready
 * before the database has been reached (a wrong DATABASE_URL must not let a rollout replace
 * healthy pods), and still ready during an outage after it has been (the spool acknowledges
 * callbacks; taking every pod out of the load balancer would lose them).
 */

jest.setTimeout(90_000);

let spoolRoot: string;
const services: ServiceProcess[] = [];

beforeAll(() => {
  spoolRoot = mkdtempSync(path.join(os.tmpdir(), 'sw-status-readiness-'));
});
afterAll(async () => {
  await Promise.all(services.map((service) => service.kill()));
  rmSync(spoolRoot, { recursive: true, force: true });
});

async function launch(databaseUrl: string) {
  const launched = await launchProductionService(
    databaseUrl,
    path.join(spoolRoot, randomUUID()),
    2_000,
  );
  services.push(launched.service);
  return launched;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('When the database cannot be reached at start, then the pod never becomes ready and one log line says why', async () => {
  // Nothing listens there: a wrong host or port in DATABASE_URL.
  const { service, readyz } = await launch(
    `postgres://sw:secret@127.0.0.1:${await freePort()}/sw_status`,
  );

  for (let probe = 0; probe < 4; probe++) {
    const { status, body } = await readyz();
    expect(status).toBe(503);
    expect(body).toMatchObject({
      status: 'unavailable',
      database: 'unreachable',
      schema: { state: 'unknown' },
      reason: 'the database has not been reached since start (ECONNREFUSED)',
    });
    await pause(500);
  }
  const said = service
    .stdout()
    .split('\n')
    .filter((line) => line.includes('database not reached yet'));
  expect(said).toHaveLength(1);
  expect(JSON.parse(said[0]!)).toMatchObject({ level: 40, code: 'ECONNREFUSED' });
  // The password never reaches the log.
  expect(service.stdout()).not.toContain('secret');
});

describe('an outage after a healthy start', () => {
  let pg: DisposablePostgres;

  beforeAll(async () => {
    pg = await createDisposablePostgres();
    const { db } = createDb(pg.url, 1);
    try {
      await migrateToLatest(db);
    } finally {
      await db.destroy();
    }
  }, 60_000);
  afterAll(async () => {
    await pg?.destroy();
  });

  test('When PostgreSQL stops after the pod was ready, then it stays ready while the spool takes the callbacks', async () => {
    const { readyz, callback } = await launch(pg.url);
    await eventually(async () => (await readyz()).status === 200, 'the pod is ready', 20_000);
    expect(await callback()).toBe(200);

    await pg.stop();
    for (let probe = 0; probe < 3; probe++) {
      const { status, body } = await readyz();
      expect({ status, database: body.database }).toEqual({
        status: 200,
        database: 'unreachable',
      });
      await pause(500);
    }
    // Callbacks are still acknowledged, into the spool.
    expect(await callback()).toBe(200);
    const during = await readyz();
    expect(during.status).toBe(200);
    expect(during.body).toMatchObject({ database: 'unreachable', spool: { state: 'spooling' } });

    await pg.start();
    await eventually(
      async () => (await readyz()).body.database === 'ok',
      'the database is back',
      30_000,
    );
  });
});
