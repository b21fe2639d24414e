import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import { createDatabaseReadiness } from '../../src/db/database-readiness';
import { isDatabaseUnavailable } from '../../src/db/database-unavailable';
import { knownMigrations } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { createDisposablePostgres } from '../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../ingest/support/disposable-postgres';
import { eventually } from '../helpers/eventually';
import { REPO_ROOT, productionEnv, startService } from '../ops/service-process';
import type { ServiceProcess } from '../ops/service-process';

/**
 * PostgreSQL over TLS with a private CA, as README "PostgreSQL over TLS" documents it: a real
 * server with a certificate from a CA made here with openssl, the CA file named in DATABASE_URL
 * (`sslmode=verify-full&sslrootcert=…`, read by pg-connection-string). The migration command
 * and the service work with it; without the CA (`sslmode=require` included), with another CA,
 * or for a host the certificate does not name, the connection is refused and readiness says so.
 */

jest.setTimeout(90_000);

const run = promisify(execFile);
let dir: string;
let pg: DisposablePostgres;
let port: string;
const services: ServiceProcess[] = [];

async function openssl(...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

/** A self-signed CA: `<name>.key`, `<name>.crt`. */
async function makeCa(name: string): Promise<void> {
  await openssl(
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2'],
    ...['-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=${name}`],
    ...['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=keyCertSign'],
  );
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sw-status-tls-'));
  await makeCa('private-ca');
  await makeCa('other-ca');
  // The server's certificate, issued by the private CA for 127.0.0.1 only.
  writeFileSync(
    path.join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
  );
  await openssl(
    ...['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr'],
    ...['-subj', '/CN=127.0.0.1'],
  );
  await openssl(
    ...['x509', '-req', '-in', 'server.csr', '-CA', 'private-ca.crt', '-CAkey', 'private-ca.key'],
    ...['-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.crt'],
  );
  pg = await createDisposablePostgres({
    tls: {
      cert: readFileSync(path.join(dir, 'server.crt'), 'utf8'),
      key: readFileSync(path.join(dir, 'server.key'), 'utf8'),
    },
  });
  port = new URL(pg.url).port;
}, 60_000);

afterAll(async () => {
  await Promise.all(services.map((service) => service.kill()));
  await pg?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

const url = (host: string, query: string) =>
  `postgres://postgres@${host}:${port}/postgres?${query}`;
const privateCa = () => path.join(dir, 'private-ca.crt');

/** What readiness reports for a DATABASE_URL, through the service's own pool. */
async function readinessFor(databaseUrl: string) {
  const { db } = createDb(databaseUrl, 1);
  try {
    const readiness = createDatabaseReadiness({
      db,
      logger: createLogger('silent'),
      known: await knownMigrations(),
      timeoutMs: 5_000,
    });
    return await readiness.check();
  } finally {
    await db.destroy();
  }
}

test('When DATABASE_URL names the private CA with sslmode=verify-full, then the migration command and the service run over TLS', async () => {
  const databaseUrl = url('127.0.0.1', `sslmode=verify-full&sslrootcert=${privateCa()}`);

  // The documented migration command (npm run migrate), as its own process.
  await run(process.execPath, ['--import', 'tsx', 'src/db/migrate-cli.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', DATABASE_URL: databaseUrl },
  });

  const { db } = createDb(databaseUrl, 1);
  try {
    const { rows } = await sql<{ ssl: boolean; version: string }>`
      SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()`.execute(db);
    expect(rows[0]?.ssl).toBe(true);
  } finally {
    await db.destroy();
  }

  const { port: publicPort, env } = await productionEnv(
    databaseUrl,
    path.join(dir, `spool-${randomUUID()}`),
  );
  const service = startService(env);
  services.push(service);
  await service.waitForLog('sw-status listening', 30_000);
  const readyz = async () => (await fetch(`http://127.0.0.1:${publicPort}/readyz`)).status;
  await eventually(async () => (await readyz()) === 200, 'ready over TLS', 20_000);
});

test.each([
  // node-postgres verifies `require` too, against Node's public CAs only.
  [
    'sslmode=require without the CA',
    () => url('127.0.0.1', 'sslmode=require'),
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  ],
  [
    'another CA',
    () => url('127.0.0.1', `sslmode=verify-full&sslrootcert=${path.join(dir, 'other-ca.crt')}`),
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  ],
  [
    'a host the certificate does not name',
    () => url('localhost', `sslmode=verify-full&sslrootcert=${privateCa()}`),
    'ERR_TLS_CERT_ALTNAME_INVALID',
  ],
  [
    'a CA file that is not there',
    () => url('127.0.0.1', `sslmode=verify-full&sslrootcert=${path.join(dir, 'missing.crt')}`),
    'ENOENT',
  ],
])(
  'When the connection uses %s, then it is refused and readiness names the TLS error',
  async (_label, databaseUrl, code) => {
    const report = await readinessFor(databaseUrl());
    expect(report).toMatchObject({
      database: 'unreachable',
      ready: false,
      reason: `the database has not been reached since start (${code})`,
    });
  },
);

describe('TLS failures met by a write', () => {
  // What a PostgreSQL without TLS answers a client's SSLRequest: 'N', "no".
  let plain: Server;
  let plainPort = 0;
  beforeAll(async () => {
    plain = createServer((socket) => socket.once('data', () => socket.write('N')));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    plainPort = (plain.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => plain.close(() => resolve())));

  test.each([
    [
      'another CA',
      () => url('127.0.0.1', `sslmode=verify-full&sslrootcert=${path.join(dir, 'other-ca.crt')}`),
    ],
    [
      'a host the certificate does not name',
      () => url('localhost', `sslmode=verify-full&sslrootcert=${privateCa()}`),
    ],
    [
      'TLS to a server that does not speak it',
      () => `postgres://postgres@127.0.0.1:${plainPort}/postgres?sslmode=require`,
    ],
    // Read at each new connection (the CA's optional ConfigMap deleted while pods run): it
    // threw out of node-postgres's client constructor, not as a connection's failure.
    [
      'a CA file that is no longer there',
      () => url('127.0.0.1', `sslmode=verify-full&sslrootcert=${path.join(dir, 'gone.crt')}`),
    ],
  ])(
    'When a write meets %s (a certificate renewed by another CA, say), then the database counts as unavailable: callbacks are spooled, not refused or dead-lettered',
    async (_label, databaseUrl) => {
      const { db } = createDb(databaseUrl(), 1);
      try {
        const error = await sql`SELECT 1`.execute(db).then(
          () => undefined,
          (caught: unknown) => caught,
        );
        expect(error).toBeDefined();
        expect(isDatabaseUnavailable(error)).toBe(true);
      } finally {
        await db.destroy();
      }
    },
  );
});
