import { chmod, mkdir, mkdtemp, readlink, realpath, rm, symlink } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT_DATA_BASE } from '../../src/db/embedded-postgres';
import { knownMigrations } from '../../src/db/migrate';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { REPO_ROOT, freePort, serviceEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * What a new user meets, through the real processes: a second `npm start`, `npm run migrate`
 * while the service runs and with nothing to migrate, a busy port, a bad configuration —
 * each answered in one clear line that says what to do, never `undefined` or a stack trace.
 * The service runs in a checkout of its own (a directory linking to this one's src and
 * node_modules), so its embedded PostgreSQL lives in that checkout's `.data/`; as root the
 * checkout is below a mode-700 directory, like a clone in a home directory.
 */

const running: ServiceProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((service) => service.kill()));
});

function run(env: Record<string, string>, options: { cwd?: string; entry?: string } = {}) {
  const service = startService(env, options);
  running.push(service);
  return service;
}

/** The one line a refused command prints, and its exit code. */
async function refusal(service: ServiceProcess): Promise<{ code: number | null; line: string }> {
  const { code } = await service.exited;
  const stderr = service.stderr();
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toContain('undefined');
  return { code, line: stderr.trim() };
}

describe('a checkout with the embedded PostgreSQL', () => {
  let home: string;
  let checkout: string;
  let dataDir: string;
  const ports = { PORT: '', INTERNAL_PORT: '' };

  beforeAll(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'sw-status-newcomer-'));
    // As root, a home directory only its owner may enter: the `postgres` user cannot reach
    // the checkout, so the data must live elsewhere (and survive a reboot).
    if (os.userInfo().uid === 0) await chmod(home, 0o700);
    checkout = path.join(home, 'sw-status');
    await mkdir(checkout);
    for (const name of ['src', 'node_modules', 'package.json']) {
      await symlink(path.join(REPO_ROOT, name), path.join(checkout, name));
    }
    ports.PORT = String(await freePort());
    ports.INTERNAL_PORT = String(await freePort());
  });
  afterAll(async () => {
    await rm(home, { recursive: true, force: true });
    // Root's data of this throw-away checkout.
    if (dataDir?.startsWith(`${ROOT_DATA_BASE}/`)) {
      await rm(path.dirname(dataDir), { recursive: true, force: true });
    }
  });

  test('When npm start runs, then the start log names where the data really is, a place that survives a reboot', async () => {
    const first = run({ HOST: '127.0.0.1', LOG_LEVEL: 'info', ...ports }, { cwd: checkout });
    await first.waitForLog('sw-status listening', 90_000);
    const started = first
      .stdout()
      .split('\n')
      .find((line) => line.includes('"msg":"embedded PostgreSQL started"'));
    dataDir = (JSON.parse(started!) as { dataDir: string }).dataDir;
    const link = path.join(checkout, '.data', 'postgres');
    if (os.userInfo().uid === 0) {
      expect(dataDir.startsWith(`${ROOT_DATA_BASE}/`)).toBe(true);
      expect(await readlink(link)).toBe(dataDir);
    } else {
      expect(dataDir).toBe(link);
    }
    expect(dataDir.startsWith(os.tmpdir()) && os.userInfo().uid === 0).toBe(false);
    expect(await realpath(link)).toBe(await realpath(dataDir));
  }, 120_000);

  test('When npm start is run a second time, then it is refused in one line naming the running instance and what to do', async () => {
    const holder = running[0]!;
    const second = run(
      {
        HOST: '127.0.0.1',
        PORT: String(await freePort()),
        INTERNAL_PORT: String(await freePort()),
      },
      { cwd: checkout },
    );
    const { code, line } = await refusal(second);
    expect(code).toBe(1);
    expect(line).toMatch(
      new RegExp(
        `is in use by sw-status pid ${holder.child.pid} \\(node src/main\\.ts; port ${ports.PORT}, internal_port ${ports.INTERNAL_PORT}\\)`,
      ),
    );
    expect(line).toContain(`kill ${holder.child.pid}`);
    expect(line.split('\n')).toHaveLength(1);
  }, 60_000);

  test('When npm run migrate runs while the service runs, then it says which instance holds the data and what to do', async () => {
    const holder = running[0]!;
    const migrate = run({}, { cwd: checkout, entry: 'src/db/migrate-cli.ts' });
    const { code, line } = await refusal(migrate);
    expect(code).toBe(1);
    expect(line).toContain(
      `The embedded PostgreSQL in ${dataDir} is in use by sw-status pid ${holder.child.pid}`,
    );
    expect(line).toContain('it applies migrations itself when it starts');
    expect(line.split('\n')).toHaveLength(1);
  }, 60_000);

  test('When the service has stopped and npm run migrate finds nothing to do, then it says so in one line', async () => {
    const holder = running[0]!;
    holder.child.kill('SIGTERM');
    expect((await holder.exited).code).toBe(0);

    const migrate = run({ LOG_LEVEL: 'info' }, { cwd: checkout, entry: 'src/db/migrate-cli.ts' });
    expect((await migrate.exited).code).toBe(0);
    const lines = migrate.stdout().trim().split('\n');
    expect(lines).toHaveLength(1);
    const latest = (await knownMigrations()).at(-1);
    expect(JSON.parse(lines[0]!)).toEqual(
      expect.objectContaining({
        msg: `nothing to migrate: the embedded PostgreSQL in ${dataDir} is already at ${latest}`,
      }),
    );
  }, 60_000);
});

describe('refused at start: a port in use, a HOST, a log level', () => {
  let database: TestDatabase;
  let blocker: net.Server;
  let busy: number;
  beforeAll(async () => {
    database = await createTestDatabase(1);
    blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    busy = (blocker.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => blocker.close(resolve));
    await database.destroy();
    await rm(spoolDir, { recursive: true, force: true });
  });

  const spoolDir = path.join(os.tmpdir(), `sw-status-newcomer-spool-${process.pid}`);
  const env = (overrides: Record<string, string>) =>
    serviceEnv(database.url, { SPOOL_DIR: spoolDir, ...overrides });

  test.each(['PORT', 'INTERNAL_PORT'])(
    'When %s is taken, then the process exits 1 with one line naming the variable',
    async (variable) => {
      const other = variable === 'PORT' ? 'INTERNAL_PORT' : 'PORT';
      const service = run(env({ [variable]: String(busy), [other]: String(await freePort()) }));
      const { code, line } = await refusal(service);
      expect(code).toBe(1);
      expect(line).toBe(
        `${variable}=${busy}: port ${busy} on 127.0.0.1 is already in use (another sw-status, or another program). Stop it, or set ${variable} to a free port.`,
      );
    },
    60_000,
  );

  test('When HOST is a name that leads nowhere, then the process exits 1 with one line naming HOST', async () => {
    const service = run(
      env({
        HOST: 'no-such-host.invalid',
        PORT: String(await freePort()),
        INTERNAL_PORT: String(await freePort()),
      }),
    );
    const { code, line } = await refusal(service);
    expect(code).toBe(1);
    expect(line).toBe(
      "HOST=no-such-host.invalid: no address to listen on (not an address, and no name that resolves here). Set HOST to one of this machine's addresses, or 0.0.0.0 / :: for all.",
    );
  }, 60_000);

  test('When LOG_LEVEL is not a level, then npm run migrate exits 1 with one line naming it', async () => {
    const migrate = run(
      { DATABASE_URL: database.url, LOG_LEVEL: 'verbose' },
      { entry: 'src/db/migrate-cli.ts' },
    );
    const { code, line } = await refusal(migrate);
    expect(code).toBe(1);
    expect(line).toBe(
      'Invalid configuration:\n  - LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent',
    );
  }, 60_000);
});

test('When several variables are wrong at once, then every one is reported in the same run', async () => {
  const service = run({
    NODE_ENV: 'production',
    PORT: 'eighty',
    DATABASE_URL: 'mysql://db/sw',
    SHUTDOWN_GRACE_MS: 'soon',
  });
  const { code, line } = await refusal(service);
  expect(code).toBe(1);
  for (const name of [
    'PORT',
    'DATABASE_URL',
    'SHUTDOWN_GRACE_MS',
    'SIGNALWIRE_SPACE_URL',
    'SIGNALWIRE_SIGNING_KEYS',
    'CALLBACK_TOKEN_SECRET',
    'API_TOKENS',
    'PUBLIC_BASE_URL',
  ]) {
    expect(line).toMatch(new RegExp(`^  - ${name}: `, 'm'));
  }
  expect(service.stdout()).toBe('');
}, 60_000);

test('When DATABASE_URL points where no database listens, then npm start says so in one line naming the address', async () => {
  const port = await freePort();
  const service = run(
    serviceEnv(`postgres://postgres@127.0.0.1:${port}/sw_status`, {
      PORT: String(await freePort()),
      INTERNAL_PORT: String(await freePort()),
      SPOOL_DIR: path.join(os.tmpdir(), `sw-status-newcomer-nodb-${process.pid}`),
    }),
  );
  const { code, line } = await refusal(service);
  await rm(path.join(os.tmpdir(), `sw-status-newcomer-nodb-${process.pid}`), {
    recursive: true,
    force: true,
  });
  expect(code).toBe(1);
  expect(line).toBe(
    `DATABASE_URL: cannot reach the database at 127.0.0.1:${port} (connect ECONNREFUSED 127.0.0.1:${port})`,
  );
}, 60_000);
