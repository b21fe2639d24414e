import { existsSync } from 'node:fs';
import path from 'node:path';
import { cliLogLevel, cliSpoolDir, cliStoreBody, redactSecrets } from '../config';
import { cliDatabaseUrl } from '../db/cli-database-url';
import { isDatabaseUnavailable, isSessionRefused } from '../db/database-unavailable';
import { createDb } from '../db/database';
import type { DatabaseHandle } from '../db/database';
import { startEmbeddedPostgres } from '../db/embedded-postgres';
import { databaseNamed, knownMigrations } from '../db/migrate';
import { schemaProblem } from '../db/schema-version';
import type { EmbeddedPostgres } from '../db/embedded-postgres';
import { createLogger } from '../logger';
import type { Logger } from '../logger';
import {
  HolderGoneError,
  InstanceLockedError,
  UnknownRequestError,
  askHolder,
  describeHolder,
  judgeHolder,
} from '../process/instance-lock';
import { invokedAs } from '../process/invoked-as';
import { StartupError } from '../process/startup-error';
import { createGroupCommitRecorder } from './group-commit-recorder';
import type { IngestStatus } from './group-commit-recorder';
import { openSpool } from './spool';
import type { Spool } from './spool';
import { signalExitCode } from '../process/signal-exit-code';

/**
 * The spool command, for operators: `npm run spool -- <command> [DIR]`, or in the production
 * image `node dist/ingest/spool-cli.js <command> [DIR]` (DIR defaults to SPOOL_DIR).
 *
 * - `status`: what DIR holds (events, dead letters) and which process holds it;
 * - `replay`: replays an orphaned spool — a volume whose pod is gone, a directory copied off a
 *   dead node — into DATABASE_URL, exactly once (as a restarted service would), and exits 0
 *   once it is empty; 1 if events remain at `--timeout` (default 300 s) or if it dead-lettered
 *   any (they are not in the database: a Job must not pass as done);
 * - `requeue-dead-letters`: puts the dead letters back into the spool once their cause is
 *   fixed. When a running service holds DIR, that service does it (over the lock's socket, so
 *   `kubectl exec` into its pod works) and replays them at once; otherwise this command
 *   replays them like `replay`. Exits 1 when dead letters remain: unreadable records it
 *   cannot requeue, or (replaying itself) events dead-lettered again.
 *
 * SIGTERM (a deleted Job or pod: as PID 1 in a container, Node ignores it unless it listens) or
 * SIGINT (Ctrl-C) stops a replay between events: what is stored stays stored, the rest stays in
 * DIR for the next run, and the command says how much is left (exit 143 or 130).
 *
 * Needs only DATABASE_URL (outside production: the embedded PostgreSQL when unset) and
 * optionally SPOOL_DIR, LOG_LEVEL (default warn) and STORE_BODY (default false: as the service,
 * it stores no text from the spool, even what a run with it on spooled).
 */
const USAGE = `usage: spool <status|replay|requeue-dead-letters> [DIR] [--timeout SECONDS]
  DIR defaults to SPOOL_DIR`;

async function main(argv: readonly string[]): Promise<number> {
  const { command, dir, timeoutMs } = parseArguments(argv);
  if (!existsSync(dir)) throw new StartupError(`${dir}: no such directory`);
  const logger = createLogger(cliLogLevel('warn'));
  const storeBody = cliStoreBody();
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const found = await judgeHolder(dir);

  if (found?.state === 'alive') {
    const { holder } = found;
    const ask = async (op: string): Promise<unknown> =>
      askHolder(dir, op).catch((error: unknown) => {
        // It answered: it runs here, it just has not got that far (it registers its requests
        // once it has the directory, as it starts).
        if (error instanceof UnknownRequestError) {
          throw new StartupError(
            `${dir} is held by ${describeHolder(holder)}, which is still starting and cannot ` +
              `answer ${op} yet: run the command again in a moment`,
          );
        }
        // It may have done it or not: `status` (asking the next holder, if any) tells.
        if (error instanceof HolderGoneError) {
          throw new StartupError(
            `${dir} was held by ${describeHolder(holder)}, which let it go before answering ` +
              `${op}: run \`status\`, then the command again if need be`,
          );
        }
        throw new StartupError(
          `${dir} is held by ${describeHolder(holder)}, which does not answer ` +
            `(${redactSecrets(error instanceof Error ? error.message : String(error))})`,
        );
      });
    if (command === 'status') {
      const status = (await ask('status')) as HolderStatus;
      say(`${dir} is held by ${describeHolder(holder)}: ${describeStatus(status)}`);
      return 0;
    }
    if (command === 'requeue-dead-letters') {
      const result = (await ask('requeue-dead-letters')) as RequeueResult;
      say(
        `requeued ${result.requeued} dead letters into the spool of ${describeHolder(holder)}, which replays them now` +
          (result.kept > 0
            ? `; ${result.kept} unreadable records stay in the dead-letter file`
            : ''),
      );
      // What the holder's replay dead-letters again only `status` shows later: it is not
      // waited for here.
      return result.kept > 0 ? 1 : 0;
    }
    say(
      `${dir} is in use by ${describeHolder(holder)}, which replays it itself: nothing to do. ` +
        '(`status` shows its progress.)',
    );
    return 1;
  }

  if (found?.state === 'foreign') {
    // Its socket is another kernel's: nothing here can ask it, or tell it from a record copied
    // off a dead node (the copy refreshed the heartbeat). Only the heartbeat can.
    const where = `${dir} is held by ${describeHolder(found.holder)}, a process on another machine`;
    if (command === 'status') {
      say(
        `${where} (its heartbeat is fresh), which cannot be asked from here: run the command ` +
          `where it runs (if that machine is gone, \`replay\` takes ${dir} over once the ` +
          `heartbeat is ${FOREIGN_WAIT_S} s old)`,
      );
      return 1;
    }
    say(
      `${where}: waiting up to ${FOREIGN_WAIT_S} s for its heartbeat to stop (a directory ` +
        'copied off a dead node) before taking it over…',
    );
  }

  if (command === 'status') {
    // Nobody holds the directory: opened only to count what it holds, then let go — `status`
    // never replays (it is what an operator runs first on an orphaned claim).
    const spool = await openSpool({ dir, logger, command: invokedAs() });
    say(
      `${dir} is not in use: ${spool.depth()} events to replay, ${spool.deadLetters()} dead letters`,
    );
    await spool.close();
    return 0;
  }

  // Nobody holds the directory, or only a heartbeat from elsewhere that may yet go stale: this
  // command takes it (openSpool waits for that heartbeat) and replays into DATABASE_URL.
  const spool = await openSpool({ dir, logger, command: invokedAs() }).catch((error: unknown) => {
    if (found?.state === 'foreign' && error instanceof InstanceLockedError) {
      throw new StartupError(
        `${dir} is in use by ${describeHolder(error.holder)}, on another host, whose heartbeat ` +
          `did not stop within ${FOREIGN_WAIT_S} s: it may be live (and replay it itself); ` +
          'only one process may use the directory at a time',
        { cause: error },
      );
    }
    throw error;
  });
  holding = true;
  // Until the replay below answers for itself (createGroupCommitRecorder), this process answers
  // the commands run beside it: it holds the directory while it waits for the database.
  let waitingFor = 'the database';
  spool.lock.handle('status', async (): Promise<HolderStatus> => ({
    database: 'unreachable',
    spool: {
      state: 'idle',
      depth: spool.depth(),
      dead_letters: spool.deadLetters(),
      waiting_for_database: waitingFor,
    },
  }));
  // Appended to the spool before the replay starts, so replayed with the rest; one at a time,
  // this command's own included.
  let requeueing: Promise<unknown> = Promise.resolve();
  const requeue = (): Promise<RequeueResult> => {
    const result = requeueing.then(() => spool.requeueDeadLetters());
    requeueing = result.catch(() => undefined);
    return result;
  };
  const requeued = async (): Promise<void> => {
    for (let last; last !== requeueing;) {
      last = requeueing;
      await last;
    }
  };
  spool.lock.handle('requeue-dead-letters', requeue);

  let database: { handle: DatabaseHandle; embedded?: EmbeddedPostgres; name: string } | undefined;
  try {
    if (command === 'requeue-dead-letters') {
      const result = await requeue();
      say(
        `requeued ${result.requeued} dead letters` +
          (result.kept > 0 ? ` (${result.kept} unreadable records stay)` : ''),
      );
    }
    await requeued();
    if (spool.isEmpty()) {
      say(`${dir}: nothing to replay (${spool.deadLetters()} dead letters)`);
      return command === 'requeue-dead-letters' ? deadLettersLeft(spool) : 0;
    }
    const deadline = performance.now() + timeoutMs;
    database = await connect(logger);
    waitingFor = database.name;
    interrupt.signal.throwIfAborted();
    // Written into a schema this release cannot write to, events would only fail (or land
    // half-way): the migrations come first.
    const problem = await whenReachable(
      database.name,
      deadline,
      async () => schemaProblem(database!.handle.db, await knownMigrations()),
      (reason) => (waitingFor = `${database!.name} (${reason})`),
    );
    if (problem !== null) {
      throw new StartupError(`refusing to replay ${dir} into ${database.name}: ${problem}`);
    }
    await requeued();
    const code = await replay(spool, database.handle, database.name, {
      logger,
      deadline,
      storeBody,
    });
    return code === 0 && command === 'requeue-dead-letters' ? deadLettersLeft(spool) : code;
  } catch (error) {
    if (!(error instanceof Interrupted)) throw error;
    say(
      `stopped by ${error.signal} before replaying: ${spool.depth()} events left, ` +
        `${spool.deadLetters()} dead letters in ${dir}: run the command again`,
    );
    return error.exitCode;
  } finally {
    // A request from now on would find the spool closing under it.
    const closing = async (): Promise<never> => {
      throw new Error(`${dir} is being released: run the command again`);
    };
    spool.lock.handle('status', closing);
    spool.lock.handle('requeue-dead-letters', closing);
    await spool.close();
    await database?.handle.db.destroy();
    await database?.embedded?.stop();
  }
}

/** The commands' answer to `status`: the service's, or a replay's still waiting for the database. */
type HolderStatus = IngestStatus & { spool: { waiting_for_database?: string } };

// How long openSpool waits for a heartbeat from another machine to stop (acquireInstanceLock's
// default foreignWaitMs).
const FOREIGN_WAIT_S = 30;

/** The signal that stops the command, as the error that ends what waits for it. */
class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`stopped by ${signal}`);
    this.name = 'Interrupted';
  }

  get exitCode(): number {
    return signalExitCode(this.signal);
  }
}

// Aborted (with an Interrupted) by the first SIGTERM or SIGINT.
const interrupt = new AbortController();
// Whether this process holds the spool: from then on a signal stops the work instead of the
// process, so that the spool is closed and what is left said.
let holding = false;

/**
 * SIGTERM (a Job past its deadline, a deleted pod) or SIGINT (Ctrl-C). Stopping is always safe
 * for the events (the spool keeps every one until the database has it; one stored twice is
 * ignored), but a process killed outright says nothing. Before the spool is open there is
 * nothing to close: the command just ends. Then the waits and the replay stop, `finally`
 * closes the spool, and the usual summary says what is left. As PID 1 in a container, Node
 * ignores SIGTERM unless it listens for it (see db/migrate-cli.ts).
 */
function onSignal(signal: NodeJS.Signals): void {
  const stopped = new Interrupted(signal);
  // Again (npm run forwards Ctrl-C, so one press can come twice): already stopping.
  if (interrupt.signal.aborted) return;
  if (!holding) process.exit(stopped.exitCode);
  say(`stopping (${signal}): what is stored stays stored, the rest stays in the spool…`);
  // A database that stopped answering mid-write must not keep the process from exiting; what
  // it was writing is replayed again by the next run.
  setTimeout(() => {
    say(
      `could not stop within ${STOP_WITHIN_MS / 1000} s: what was not replayed stays in the spool`,
    );
    process.exit(stopped.exitCode);
  }, STOP_WITHIN_MS).unref();
  interrupt.abort(stopped);
}

const STOP_WITHIN_MS = 10_000;

interface RequeueResult {
  requeued: number;
  kept: number;
}

async function replay(
  spool: Spool,
  database: DatabaseHandle,
  name: string,
  { logger, deadline, storeBody }: { logger: Logger; deadline: number; storeBody: boolean },
): Promise<number> {
  const depth = spool.depth();
  const deadLettersBefore = spool.deadLetters();
  say(`replaying ${depth} events from ${spool.dir} into ${name}…`);
  const recorder = createGroupCommitRecorder({
    db: database.db,
    logger,
    spool,
    batchMax: 1,
    batchWaitMs: 0,
    queueMax: 1,
    maxInFlight: 1,
    storeBody,
  });
  recorder.start();
  // Nothing is recorded through it: draining just replays until empty, the deadline or a signal.
  await recorder.drain({ deadline, signal: interrupt.signal });
  const stats = recorder.stats();
  const left = spool.depth();
  say(
    `replayed ${stats.replayed} events (${stats.replayed - stats.replayRefused} stored or already there` +
      `, ${stats.replayRefused} refused), ${stats.deadLettered} dead-lettered; ` +
      `${left} left, ${spool.deadLetters()} dead letters in ${spool.dir}`,
  );
  const stopped: unknown = interrupt.signal.reason;
  if (stopped instanceof Interrupted) {
    say(`stopped by ${stopped.signal}: run the command again`);
    return stopped.exitCode;
  }
  // The writer's, and the spool's own (unreadable lines, segments set aside): counted both
  // ways, as a requeue asked meanwhile lowers the spool's count.
  const deadLettered = Math.max(stats.deadLettered, spool.deadLetters() - deadLettersBefore);
  if (deadLettered > 0) {
    say(
      `${deadLettered} events were dead-lettered by this run and are not in the database: ` +
        'fix their cause (the log says it), then run `requeue-dead-letters`',
    );
  }
  if (left > 0) {
    say(
      'not everything was replayed within --timeout (the log says what held it: the database, ' +
        "a message locked elsewhere, or no room on the spool's volume for a dead letter): run " +
        'the command again',
    );
  }
  return left > 0 || deadLettered > 0 ? 1 : 0;
}

/**
 * `requeue-dead-letters`' code once it has replayed what it requeued: 1 while dead letters
 * remain (unreadable records it cannot requeue, events dead-lettered again), which it was run
 * to empty.
 */
function deadLettersLeft(spool: Spool): number {
  const left = spool.deadLetters();
  if (left === 0) return 0;
  say(`${left} dead letters remain in ${spool.dir}: they are not in the database`);
  return 1;
}

/**
 * `ask`, asked again every second while the database cannot be reached (the outage that left
 * the spool behind may not be over), until `deadline`: then the command fails in one line.
 * `waiting` hears why it waits; a signal ends the wait (Interrupted).
 */
async function whenReachable<T>(
  name: string,
  deadline: number,
  ask: () => Promise<T>,
  waiting: (reason: string) => void,
): Promise<T> {
  let said = false;
  for (;;) {
    try {
      return await untilInterrupted(ask());
    } catch (error) {
      if (!isDatabaseUnavailable(error)) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      // Waiting cannot mend a wrong user, password or database name.
      if (isSessionRefused(error)) {
        throw new StartupError(`${name} refused the session (${redactSecrets(reason)})`, {
          cause: error,
        });
      }
      if (performance.now() + RETRY_MS > deadline) {
        throw new StartupError(
          `cannot reach ${name} (${redactSecrets(reason)}): run the command again`,
          {
            cause: error,
          },
        );
      }
      if (!said) say(`waiting for ${name} (${redactSecrets(reason)})…`);
      said = true;
      waiting(redactSecrets(reason));
      await untilInterrupted(new Promise((resolve) => setTimeout(resolve, RETRY_MS)));
    }
  }
}

/** `work`, or the Interrupted of a signal, whichever comes first (the work is not stopped). */
function untilInterrupted<T>(work: Promise<T>): Promise<T> {
  const { signal } = interrupt;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

const RETRY_MS = 1_000;

async function connect(
  logger: Logger,
): Promise<{ handle: DatabaseHandle; embedded?: EmbeddedPostgres; name: string }> {
  const url = cliDatabaseUrl();
  // Which database the events go into (host, port and name), never the credentials: the name
  // is built from those three alone, and redactSecrets also erases a password that happens to
  // be part of them.
  if (url) return { handle: createDb(url, 2), name: redactSecrets(databaseNamed(url)) };
  const embedded = await startEmbeddedPostgres(logger, { command: invokedAs() });
  return {
    handle: createDb(embedded.url, 2),
    embedded,
    name: `the embedded PostgreSQL in ${embedded.dataDir}`,
  };
}

function describeStatus({ database, spool }: HolderStatus): string {
  if (spool.waiting_for_database !== undefined) {
    return (
      `${spool.depth} events to replay, ${spool.dead_letters} dead letters; ` +
      `waiting for ${spool.waiting_for_database} before replaying`
    );
  }
  return (
    `${spool.depth} events to replay, ${spool.dead_letters} dead letters, spool ${spool.state}, ` +
    `database ${database}${spool.retrying ? `, retrying after ${spool.retrying}` : ''}` +
    (spool.waiting_for_schema ? `, waiting: ${spool.waiting_for_schema}` : '')
  );
}

function parseArguments(argv: readonly string[]): {
  command: 'status' | 'replay' | 'requeue-dead-letters';
  dir: string;
  timeoutMs: number;
} {
  const rest = [...argv];
  let timeoutSeconds = 300;
  const flag = rest.indexOf('--timeout');
  if (flag !== -1) {
    timeoutSeconds = Number(rest[flag + 1]);
    rest.splice(flag, 2);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) usage('--timeout needs seconds');
  }
  const [command, dir, ...extra] = rest;
  if (command !== 'status' && command !== 'replay' && command !== 'requeue-dead-letters') {
    usage(command === undefined ? 'no command' : `unknown command ${command}`);
  }
  if (extra.length > 0) usage(`unexpected ${extra.join(' ')}`);
  return {
    command,
    // SPOOL_DIR read with the service's reader (trimmed; unset is the default, blank refused).
    dir: path.resolve(dir ?? cliSpoolDir()),
    timeoutMs: timeoutSeconds * 1000,
  };
}

function usage(problem: string): never {
  console.error(`${problem}\n${USAGE}`);
  process.exit(2);
}

function say(line: string): void {
  console.log(line);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    // Defence in depth: no message known to carry a secret, but one from a driver might.
    console.error(redactSecrets(error instanceof Error ? error.message : String(error)));
    process.exit(1);
  },
);
