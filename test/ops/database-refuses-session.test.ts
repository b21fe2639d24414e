import { isDatabaseUnavailable } from '../../src/db/database-unavailable';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { asAdmin, createTestDatabase, endSessions } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { launchProductionService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * PostgreSQL is up but refuses the service's sessions: a password rotated in the database
 * before the Secret, a role made NOLOGIN, a database closed to connections for maintenance.
 * Nothing can be written until an operator mends it, whatever the callback, so acknowledged
 * callbacks go to the outage spool and are replayed afterwards, as when the server cannot be
 * reached. Answering 503 instead would lose them: SignalWire tries a callback three times.
 */

jest.setTimeout(90_000);

let spoolRoot: string;
const services: ServiceProcess[] = [];
const databases: TestDatabase[] = [];
const roles: string[] = [];

beforeAll(() => {
  spoolRoot = mkdtempSync(path.join(os.tmpdir(), 'sw-status-refused-session-'));
});
afterAll(async () => {
  await Promise.all(services.map((service) => service.kill()));
  for (const database of databases) {
    const name = new URL(database.url).pathname.slice(1);
    await asAdmin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    await database.destroy();
  }
  for (const role of roles) await asAdmin(`DROP ROLE IF EXISTS ${role}`);
  rmSync(spoolRoot, { recursive: true, force: true });
});

/** A database and a role of its own with what the service needs (the migrations run as admin). */
async function databaseWithRole(): Promise<{
  database: TestDatabase;
  name: string;
  role: string;
  url: string;
}> {
  const database = await createTestDatabase(1);
  databases.push(database);
  const role = `sw_status_app_${randomUUID().slice(0, 8)}`;
  roles.push(role);
  // A password: the embedded PostgreSQL asks for one (the CI's system one trusts local users).
  await asAdmin(`CREATE ROLE ${role} LOGIN PASSWORD '${role}-password'`);
  await database.pool.query(
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role};
     GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${role}`,
  );
  const url = new URL(database.url);
  url.username = role;
  url.password = `${role}-password`;
  return { database, name: url.pathname.slice(1), role, url: url.toString() };
}

const refusals: ReadonlyArray<
  [
    string,
    (d: { name: string; role: string }) => string,
    (d: { name: string; role: string }) => string,
  ]
> = [
  [
    'the role may no longer log in (28000)',
    ({ role }) => `ALTER ROLE ${role} NOLOGIN`,
    ({ role }) => `ALTER ROLE ${role} LOGIN`,
  ],
  [
    'the database is closed to connections (55000)',
    ({ name }) => `ALTER DATABASE ${name} ALLOW_CONNECTIONS false`,
    ({ name }) => `ALTER DATABASE ${name} ALLOW_CONNECTIONS true`,
  ],
];

test.each(refusals)(
  'When PostgreSQL refuses the service’s sessions because %s, then callbacks are acknowledged from the spool and stored once it lets the service in again',
  async (_what, refuse, mend) => {
    const target = await databaseWithRole();
    const spoolDir = path.join(spoolRoot, randomUUID());
    const { service, readyz, callback } = await launchProductionService(
      target.url,
      spoolDir,
      3_000,
    );
    services.push(service);
    await eventually(async () => (await readyz()).status === 200, 'the pod is ready', 20_000);
    expect(await callback({ MessageSid: randomUUID() })).toBe(200);

    await asAdmin(refuse(target));
    await endSessions(target.name);
    const during = [randomUUID(), randomUUID()];
    for (const id of during) expect(await callback({ MessageSid: id })).toBe(200); // spooled
    expect((await readyz()).body).toMatchObject({ spool: { depth: expect.any(Number) } });
    expect(((await readyz()).body.spool as { depth: number }).depth).toBeGreaterThanOrEqual(1);

    await asAdmin(mend(target));
    const stored = async () => {
      try {
        const { rows } = await target.database.pool.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM messages WHERE id = ANY($1)',
          [during],
        );
        return rows[0]!.n;
      } catch (error) {
        // The test's own connection, ended with the others, may take past its 2 s connect
        // timeout to come back on a busy machine (one CI run): it asks again.
        if (isDatabaseUnavailable(error)) return 0;
        throw error;
      }
    };
    await eventually(async () => (await stored()) === 2, 'the spooled callbacks stored', 30_000);
  },
);
