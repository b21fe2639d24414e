import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer as createTcpServer } from 'node:net';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { freePort } from '../../src/db/free-port';
import { databaseNamed } from '../../src/db/migrate';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { cxmlFields } from '../helpers/callbacks';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { runSpoolCommand } from './support/spool-command';

/**
 * `npm run spool -- replay` writes an orphaned spool into DATABASE_URL: its lines say which
 * database that is — host, port and name, so an operator with several environments sees where
 * the events went — and never the credentials the URL carries.
 */

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

let dir: string;
let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(async () => {
  await database.destroy();
});
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-target-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('When the spool command replays into DATABASE_URL, then it names the database by host, port and name, and never the password', async () => {
  const url = new URL(database.url);
  // A password in any case: a trust-auth TEST_DATABASE_URL has none, and ignores this one.
  if (!url.password) url.password = 'spool-cli-test-password';
  const password = decodeURIComponent(url.password);
  const name = url.pathname.slice(1);
  const spool = await openSpool({ dir, logger });
  await spool.append(
    [cxmlFields(), cxmlFields()].map((fields) =>
      normalizeCxmlCallback(fields, { receivedAt: new Date(), storeBody: false }),
    ),
  );
  await spool.close();

  const replay = await runSpoolCommand(['replay', dir], { DATABASE_URL: url.toString() });

  expect(replay.stderr).toBe('');
  expect(replay.code).toBe(0);
  expect(replay.stdout).toContain(
    `replaying 2 events from ${dir} into the database ${name} at ${url.hostname}:${url.port || 5432}…`,
  );
  expect(replay.stdout).not.toContain(password);
  expect(replay.stdout).not.toContain(url.username + ':');
});

test('The database a command names is the one node-postgres connects to, without credentials', () => {
  expect(databaseNamed('postgres://app:s3cret@db.internal:6432/sw_status?sslmode=require')).toBe(
    'the database sw_status at db.internal:6432',
  );
  expect(databaseNamed('postgres://app:s3cret@db.internal/sw%20status')).toBe(
    'the database sw status at db.internal:5432',
  );
  // libpq's form: host and port as parameters (a Unix socket directory), the password too.
  expect(
    databaseNamed('postgres://app@/sw_status?host=/var/run/postgresql&port=5433&password=s3cret'),
  ).toBe('the database sw_status at /var/run/postgresql:5433');
  expect(databaseNamed('postgres://app:s3cret@/sw_status')).toBe(
    'the database sw_status at localhost:5432',
  );
  // No name in the URL: node-postgres's default database, not named here.
  expect(databaseNamed('postgres://app:s3cret@db.internal:6432')).toBe(
    'the database at db.internal:6432',
  );
});

async function spoolOfTwo(): Promise<void> {
  const spool = await openSpool({ dir, logger });
  await spool.append(
    [cxmlFields(), cxmlFields()].map((fields) =>
      normalizeCxmlCallback(fields, { receivedAt: new Date(), storeBody: false }),
    ),
  );
  await spool.close();
}

test('When the database cannot be reached yet, then replay waits for it within --timeout and replays once it answers', async () => {
  await spoolOfTwo();
  const target = new URL(database.url);
  // The database's address, unreachable until the command says it waits for it.
  const port = await freePort();
  const url = new URL(database.url);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  const sockets: Socket[] = [];
  const forwarder = createTcpServer((client) => {
    const onward = connect(Number(target.port || 5432), target.hostname);
    sockets.push(client, onward);
    client.pipe(onward).pipe(client);
    client.on('error', () => undefined);
    onward.on('error', () => undefined);
  });
  try {
    const replay = await runSpoolCommand(
      ['replay', dir, '--timeout', '30'],
      { DATABASE_URL: url.toString() },
      {
        onStdout: (stdout) => {
          if (stdout.includes('waiting for') && !forwarder.listening) {
            forwarder.listen(port, '127.0.0.1');
          }
        },
      },
    );

    expect(replay.stdout).toMatch(/waiting for the database .* \(connect ECONNREFUSED/);
    expect(replay.stdout).toContain('replayed 2 events');
    expect(replay.code).toBe(0);
  } finally {
    for (const socket of sockets) socket.destroy();
    if (forwarder.listening) await new Promise((resolve) => forwarder.close(resolve));
  }
});

test('When the database stays out of reach, then replay gives up at --timeout in one line', async () => {
  await spoolOfTwo();
  const url = new URL(database.url);
  url.hostname = '127.0.0.1';
  url.port = String(await freePort());
  const started = Date.now();

  const replay = await runSpoolCommand(['replay', dir, '--timeout', '3'], {
    DATABASE_URL: url.toString(),
  });

  expect(replay.code).toBe(1);
  expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
  expect(replay.stderr.trim().split('\n')).toEqual([
    expect.stringMatching(
      /cannot reach the database .* \(connect ECONNREFUSED .*\): run the command again$/,
    ),
  ]);
});

test('When the database refuses the session (a wrong user), then replay says so at once instead of waiting', async () => {
  await spoolOfTwo();
  const url = new URL(database.url);
  url.username = 'sw_status_no_such_role';
  url.password = 'not-the-password';
  const started = Date.now();

  const replay = await runSpoolCommand(['replay', dir, '--timeout', '60'], {
    DATABASE_URL: url.toString(),
  });

  expect(replay.code).toBe(1);
  expect(replay.stderr).toMatch(/refused the session \(.*sw_status_no_such_role/);
  expect(replay.stderr).not.toContain('not-the-password');
  // Not a timing bound: without the refusal being told apart it waits the whole minute.
  expect(Date.now() - started).toBeLessThan(30_000);
});
