import { existsSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_SPOOL_DIR, cliLogLevel, cliStoreBody, redactSecrets } from '../config';
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
import { askHolder, describeHolder, findHolder } from '../process/instance-lock';
import { invokedAs } from '../process/invoked-as';
import { StartupError } from '../process/startup-error';
import { createGroupCommitRecorder } from './group-commit-recorder';
import type { IngestStatus } from './group-commit-recorder';
import { openSpool } from './spool';
import type { Spool } from './spool';

/**
 * The spool command, for operators: `npm run spool -- <command> [DIR]`, or in the production
 * image `node dist/ingest/spool-cli.js <command> [DIR]` (DIR defaults to SPOOL_DIR).
 *
 * - `status`: what DIR holds (events, dead letters) and which process holds it;
 * - `replay`: replays an orphaned spool — a volume whose pod is gone, a directory copied off a
 *   dead node — into DATABASE_URL, exactly once (as a restarted service would), and exits 0
 *   once it is empty (1 if events remain at `--timeout`, default 300 s);
 * - `requeue-dead-letters`: puts the dead letters back into the spool once their cause is
 *   fixed. When a running service holds DIR, that service does it (over the lock's socket, so
 *   `kubectl exec` into its pod works) and replays them at once; otherwise this command
 *   replays them like `replay`.
 *
 * Needs only DATABASE_URL (outside production: the embedded PostgreSQL when unset) and
 * optionally SPOOL_DIR, LOG_LEVEL (default warn) and STORE_BODY (default false: as the service,
 * it stores no text from the spool, even what a run with it on spooled).
 */
const USAGE = `usage: spool <status|replay|requeue-dead-letters> [DIR] [--timeout SECONDS]
  DIR defaults to SPOOL_DIR (${process.env.SPOOL_DIR || DEFAULT_SPOOL_DIR})`;

async function main(argv: readonly string[]): Promise<number> {
  const { command, dir, timeoutMs } = parseArguments(argv);
  if (!existsSync(dir)) throw new StartupError(`${dir}: no such directory`);
  const logger = createLogger(cliLogLevel('warn'));
  const storeBody = cliStoreBody();
  const holder = await findHolder(dir);

  // A holder on another machine (a volume shared over the network) cannot be asked from here.
  const ask = async (op: string): Promise<unknown> =>
    askHolder(dir, op).catch((error: unknown) => {
      throw new StartupError(
        `${dir} is held by ${describeHolder(holder!)}, which does not answer here ` +
          `(${redactSecrets(error instanceof Error ? error.message : String(error))}): run the command where it runs`,
      );
    });

  if (command === 'status') {
    if (holder) {
      const status = (await ask('status')) as IngestStatus;
      say(`${dir} is held by ${describeHolder(holder)}: ${describeStatus(status)}`);
      return 0;
    }
    const spool = await openSpool({ dir, logger, command: invokedAs() });
    say(
      `${dir} is not in use: ${spool.depth()} events to replay, ${spool.deadLetters()} dead letters`,
    );
    await spool.close();
    return 0;
  }

  if (holder) {
    if (command === 'requeue-dead-letters') {
      const result = (await ask('requeue-dead-letters')) as RequeueResult;
      say(
        `requeued ${result.requeued} dead letters into the spool of ${describeHolder(holder)}, which replays them now` +
          (result.kept > 0
            ? `; ${result.kept} unreadable records stay in the dead-letter file`
            : ''),
      );
      return 0;
    }
    say(
      `${dir} is in use by ${describeHolder(holder)}, which replays it itself: nothing to do. ` +
        '(`status` shows its progress.)',
    );
    return 1;
  }

  // Nobody holds the directory: this command takes it and replays into DATABASE_URL.
  const spool = await openSpool({ dir, logger, command: invokedAs() });
  let database: { handle: DatabaseHandle; embedded?: EmbeddedPostgres; name: string } | undefined;
  try {
    if (command === 'requeue-dead-letters') {
      const result = await spool.requeueDeadLetters();
      say(
        `requeued ${result.requeued} dead letters` +
          (result.kept > 0 ? ` (${result.kept} unreadable records stay)` : ''),
      );
    }
    if (spool.isEmpty()) {
      say(`${dir}: nothing to replay (${spool.deadLetters()} dead letters)`);
      return 0;
    }
    const deadline = Date.now() + timeoutMs;
    database = await connect(logger);
    // Written into a schema this release cannot write to, events would only fail (or land
    // half-way): the migrations come first.
    const problem = await whenReachable(database.name, deadline, async () =>
      schemaProblem(database!.handle.db, await knownMigrations()),
    );
    if (problem !== null) {
      throw new StartupError(`refusing to replay ${dir} into ${database.name}: ${problem}`);
    }
    return await replay(spool, database.handle, database.name, { logger, deadline, storeBody });
  } finally {
    await spool.close();
    await database?.handle.db.destroy();
    await database?.embedded?.stop();
  }
}

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
  // Nothing is recorded through it: draining just replays until empty or the deadline.
  await recorder.drain({ deadline });
  const stats = recorder.stats();
  const left = spool.depth();
  say(
    `replayed ${stats.replayed} events (${stats.replayed - stats.replayRefused} stored or already there` +
      `, ${stats.replayRefused} refused), ${stats.deadLettered} dead-lettered; ` +
      `${left} left, ${spool.deadLetters()} dead letters in ${spool.dir}`,
  );
  if (left > 0) {
    say('the database did not take everything within --timeout: run the command again');
    return 1;
  }
  return 0;
}

/**
 * `ask`, asked again every second while the database cannot be reached (the outage that left
 * the spool behind may not be over), until `deadline`: then the command fails in one line.
 */
async function whenReachable<T>(name: string, deadline: number, ask: () => Promise<T>): Promise<T> {
  let said = false;
  for (;;) {
    try {
      return await ask();
    } catch (error) {
      if (!isDatabaseUnavailable(error)) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      // Waiting cannot mend a wrong user, password or database name.
      if (isSessionRefused(error)) {
        throw new StartupError(`${name} refused the session (${redactSecrets(reason)})`, {
          cause: error,
        });
      }
      if (Date.now() + RETRY_MS > deadline) {
        throw new StartupError(
          `cannot reach ${name} (${redactSecrets(reason)}): run the command again`,
          {
            cause: error,
          },
        );
      }
      if (!said) say(`waiting for ${name} (${redactSecrets(reason)})…`);
      said = true;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }
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

function describeStatus({ database, spool }: IngestStatus): string {
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
    dir: path.resolve(dir ?? (process.env.SPOOL_DIR?.trim() || DEFAULT_SPOOL_DIR)),
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
