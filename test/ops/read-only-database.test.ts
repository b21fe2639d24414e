import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { asAdmin, createTestDatabase, endSessions } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { launchProductionService, productionEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * A database that answers but cannot write: DATABASE_URL naming a hot standby, or a failover
 * after which the service's connections land on the demoted primary (DNS not yet moved, the
 * old primary back as a replica). PostgreSQL then answers every write 25006
 * (read_only_sql_transaction). Simulated with `default_transaction_read_only` on the test's
 * own database: like a standby's sessions, a session opened while it is on stays read-only.
 */

jest.setTimeout(90_000);

let spoolRoot: string;
const services: ServiceProcess[] = [];
const databases: TestDatabase[] = [];
const roles: string[] = [];

beforeAll(() => {
  spoolRoot = mkdtempSync(path.join(os.tmpdir(), 'sw-status-read-only-'));
});
afterAll(async () => {
  await Promise.all(services.map((service) => service.kill()));
  await Promise.all(databases.map((database) => database.destroy()));
  for (const role of roles) await asAdmin(`DROP ROLE IF EXISTS ${role}`);
  rmSync(spoolRoot, { recursive: true, force: true });
});

async function freshDatabase(): Promise<TestDatabase & { name: string }> {
  const database = await createTestDatabase(1);
  databases.push(database);
  return { ...database, name: new URL(database.url).pathname.slice(1) };
}

async function launch(databaseUrl: string) {
  const launched = await launchProductionService(
    databaseUrl,
    path.join(spoolRoot, randomUUID()),
    3_000,
  );
  services.push(launched.service);
  return launched;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The failover: every session of the database ends, and the ones opened next are read-only.
 * Returns once the ended sessions are gone (endSessions) and the service has had time to read
 * their goodbye (57P01): else a callback could still be spooled for "connection lost", not for
 * the read-only server these tests are about (a second, different error line, and no SQLSTATE
 * until the next probe).
 */
async function failOver(name: string): Promise<void> {
  await asAdmin(`ALTER DATABASE ${name} SET default_transaction_read_only = on`);
  await endSessions(name);
  await pause(300);
}

test('When DATABASE_URL leads to a read-only database (a hot standby), then the pod never becomes ready and /readyz says why', async () => {
  const database = await freshDatabase();
  await asAdmin(`ALTER DATABASE ${database.name} SET default_transaction_read_only = on`);
  const { readyz } = await launch(database.url);

  // Several probes, over more than one background check (every 5 s until the first good one).
  for (let probe = 0; probe < 4; probe++) {
    const { status, body } = await readyz();
    expect(status).toBe(503);
    expect(body).toMatchObject({ status: 'unavailable', database: 'unreachable' });
    expect(String(body.reason)).toMatch(/read-only/);
    await pause(1_500);
  }
});

test('When a failover leaves the pool’s connections on a read-only server, then they are not kept: once writes are accepted again the spool is replayed', async () => {
  const database = await freshDatabase();
  const { readyz, callback } = await launch(database.url);
  await eventually(async () => (await readyz()).status === 200, 'the pod is ready', 20_000);
  const before = randomUUID();
  expect(await callback({ MessageSid: before })).toBe(200);

  await failOver(database.name);
  const during = [randomUUID(), randomUUID()];
  for (const id of during) expect(await callback({ MessageSid: id })).toBe(200); // spooled
  // Long enough for the replay to meet the read-only server a few times (a probe a second).
  await pause(3_000);

  // The new primary takes writes; sessions opened from now on can write.
  await asAdmin(`ALTER DATABASE ${database.name} RESET default_transaction_read_only`);
  const stored = async () => {
    await pause(200);
    const client = new Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM messages WHERE id = ANY($1)',
        [during],
      );
      return rows[0]!.n;
    } finally {
      await client.end();
    }
  };
  // Not a timing bound: the replay needs about a second; a pinned connection never lets it.
  await eventually(async () => (await stored()) === 2, 'the spooled callbacks stored', 30_000);
});

test('When a failover leaves the service on a read-only server, then /readyz and the log say read-only (SQLSTATE 25006), not only unreachable, and the log does not repeat it every second', async () => {
  const database = await freshDatabase();
  const { service, readyz, callback } = await launch(database.url);
  await eventually(async () => (await readyz()).status === 200, 'the pod is ready', 20_000);

  await failOver(database.name);
  expect(await callback({ MessageSid: randomUUID() })).toBe(200); // spooled
  // The callback's own write normally meets the read-only server; should it have been spooled
  // for another reason (a commit timeout on a loaded machine), the replay's first try, a
  // probe later, meets it.
  await eventually(
    async () => ((await readyz()).body.spool as { retrying?: string }).retrying === '25006',
    'the SQLSTATE in /readyz',
    5_000,
  );
  // Several probes and replay attempts (one a second), whether spooling or replaying.
  for (let probe = 0; probe < 8; probe++) {
    const { status, body } = await readyz();
    // Still ready (the spool acknowledges durably); `database` keeps its documented values:
    // the write path cannot write. Why is in the SQLSTATE.
    expect(status).toBe(200);
    expect(body).toMatchObject({ database: 'unreachable', spool: { retrying: '25006' } });
    await pause(400);
  }

  // Writable again: the spool is replayed and the SQLSTATE goes with the outage.
  await asAdmin(`ALTER DATABASE ${database.name} RESET default_transaction_read_only`);
  await eventually(
    async () => {
      const { body } = await readyz();
      return body.database === 'ok' && (body.spool as { state: string }).state === 'idle';
    },
    'the spool replayed',
    30_000,
  );
  expect(((await readyz()).body.spool as { retrying?: string }).retrying).toBeUndefined();

  // Read-only said once: the replay meeting the same read-only server at each probe says
  // nothing new. Normally the one error line there is; an earlier one (see above) says why the
  // callback was spooled first.
  const errors = service
    .stdout()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg: string; component?: string })
    .filter((line) => line.level >= 50 && line.component === undefined)
    .map((line) => line.msg);
  const readOnly =
    'the database is read-only (a standby after a failover, or default_transaction_read_only) [SQLSTATE 25006]';
  expect(errors.filter((msg) => msg.includes(readOnly))).toHaveLength(1);
  expect(errors.at(-1)).toBe(
    errors.length === 1
      ? `${readOnly}: spooling accepted callbacks to disk`
      : `spool replay stopped: ${readOnly}; retrying after the next probe`,
  );
  expect(errors.length).toBeLessThanOrEqual(2);
});

/**
 * The service on a fresh database as a user of its own, given `grants` (SQL, `ROLE` standing
 * for the user's name). A password: the embedded PostgreSQL asks for one (the CI's system one
 * trusts local users).
 */
async function launchAs(prefix: string, grants: string) {
  const database = await freshDatabase();
  const role = `${prefix}_${randomUUID().slice(0, 8)}`;
  roles.push(role);
  await asAdmin(`CREATE ROLE ${role} LOGIN PASSWORD '${role}-password'`);
  await database.pool.query(grants.replaceAll('ROLE', role));
  const url = new URL(database.url);
  url.username = role;
  url.password = `${role}-password`;
  return launch(url.toString());
}

test('When DATABASE_URL’s user may read but not write, then the pod never becomes ready and /readyz says why', async () => {
  // What a reporting or read-only user is given: the schema is readable, nothing writable.
  const { readyz } = await launchAs(
    'sw_status_reader',
    'GRANT SELECT ON ALL TABLES IN SCHEMA public TO ROLE',
  );

  for (let probe = 0; probe < 4; probe++) {
    const { status, body } = await readyz();
    expect(status).toBe(503);
    expect(body).toMatchObject({ status: 'unavailable' });
    expect(String(body.reason)).toMatch(/lacks privileges every replica uses.*messages/);
    await pause(1_500);
  }
});

test('When DATABASE_URL’s user may insert events but not upsert them, then the pod never becomes ready and /readyz names what is missing', async () => {
  // What an operator granting "just inserts" would give: every event upsert of the write path
  // (INSERT … ON CONFLICT DO UPDATE) would then fail with 42501 on a ready pod.
  const { readyz } = await launchAs(
    'sw_status_inserter',
    `GRANT SELECT ON ALL TABLES IN SCHEMA public TO ROLE;
     GRANT INSERT, UPDATE ON messages, relay_jobs TO ROLE;
     GRANT INSERT ON status_events, stats_deltas TO ROLE;
     GRANT INSERT, DELETE ON send_intents TO ROLE;
     GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ROLE`,
  );

  const { status, body } = await readyz();
  expect(status).toBe(503);
  expect(String(body.reason)).toMatch(/UPDATE on status_events/);
  expect(String(body.reason)).not.toMatch(/on messages/);
});

test('When DATABASE_URL’s user was granted table by table before relay_hosts existed, then the pod never becomes ready and /readyz names relay_hosts', async () => {
  // Migration 0012's table, which the relay's expiry writes: an operator's per-table grants
  // made for an earlier release do not cover it.
  const { readyz } = await launchAs(
    'sw_status_pertable',
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ROLE;
     REVOKE ALL ON relay_hosts FROM ROLE;
     GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ROLE`,
  );

  const { status, body } = await readyz();
  expect(status).toBe(503);
  expect(String(body.reason)).toMatch(
    /lacks privileges every replica uses: SELECT on relay_hosts, INSERT on relay_hosts, UPDATE on relay_hosts, DELETE on relay_hosts not granted/,
  );
});

test('When DATABASE_URL’s user was granted table by table before sw_status_feed_removals existed, then the pod never becomes ready and /readyz names it', async () => {
  // Migration 0013's table, which every change feed page reads and retention writes: ready
  // without it, the pod answered every feed page 500.
  const { readyz } = await launchAs(
    'sw_status_pertable_feed',
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ROLE;
     REVOKE ALL ON sw_status_feed_removals FROM ROLE;
     GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ROLE`,
  );

  const { status, body } = await readyz();
  expect(status).toBe(503);
  expect(String(body.reason)).toMatch(
    /lacks privileges every replica uses: SELECT on sw_status_feed_removals, INSERT on sw_status_feed_removals, DELETE on sw_status_feed_removals not granted/,
  );
});

test('When RETENTION_DAYS is set and DATABASE_URL’s user may not delete messages, then the pod never becomes ready and /readyz names retention’s deletes; without retention the same user is ready', async () => {
  // Retention removes messages with their events (README "Retention"): ready without the
  // DELETE, the pod removed nothing, every round failing 42501. Without retention no replica
  // deletes them, and nothing more is asked.
  const database = await freshDatabase();
  const role = `sw_status_noretention_${randomUUID().slice(0, 8)}`;
  roles.push(role);
  await asAdmin(`CREATE ROLE ${role} LOGIN PASSWORD '${role}-password'`);
  await database.pool.query(
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role};
     REVOKE DELETE ON messages, status_events FROM ${role}`,
  );
  const url = new URL(database.url);
  url.username = role;
  url.password = `${role}-password`;
  const readyz = async (extra: Record<string, string>) => {
    const { port, env } = await productionEnv(url.toString(), path.join(spoolRoot, randomUUID()));
    const service = startService({ ...env, ...extra });
    services.push(service);
    await service.waitForLog('sw-status listening', 30_000);
    const probe = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      return { status: res.status, body: (await res.json()) as { reason?: string } };
    };
    // The first check's verdict (the background checks start at once).
    let verdict = await probe();
    await eventually(async () => {
      verdict = await probe();
      return verdict.status === 200 || /lacks/.test(verdict.body.reason ?? '');
    }, 'a verdict');
    return verdict;
  };

  const retained = await readyz({ RETENTION_DAYS: '30' });
  expect(retained.status).toBe(503);
  expect(retained.body.reason).toMatch(
    /lacks privileges every replica uses: DELETE on messages, DELETE on status_events not granted/,
  );
  expect((await readyz({})).status).toBe(200);
});
