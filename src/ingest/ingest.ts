import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config';
import type { Db } from '../db/database';
import type { Logger } from '../logger';
import type { RecordOptions } from '../messages/record-events';
import { createGroupCommitRecorder } from './group-commit-recorder';
import type { GroupCommitOptions, GroupCommitRecorder } from './group-commit-recorder';
import { InstanceLockedError, describeHolder } from '../process/instance-lock';
import { StartupError } from '../process/startup-error';
import { openSpool } from './spool';
import type { Spool, SpoolOptions } from './spool';

/**
 * The production ingest path: group commit in front of PostgreSQL, the outage spool
 * (opened by the caller with openSpool, so metrics can read `spool.depth()`) behind it.
 * Whatever an earlier process left in the spool starts replaying at once.
 */
export function createIngestRecorder(deps: {
  config: Config;
  db: Db;
  logger: Logger;
  spool: Spool;
  recordOptions?: RecordOptions;
  onReplayRefused?: GroupCommitOptions['onReplayRefused'];
  schemaProblem?: GroupCommitOptions['schemaProblem'];
}): GroupCommitRecorder {
  const { config } = deps;
  const recorder = createGroupCommitRecorder({
    db: deps.db,
    logger: deps.logger,
    spool: deps.spool,
    recordOptions: deps.recordOptions,
    onReplayRefused: deps.onReplayRefused,
    schemaProblem: deps.schemaProblem,
    batchMax: config.ingestBatchMax,
    batchWaitMs: config.ingestBatchWaitMs,
    queueMax: config.ingestQueueMax,
    queueMaxBytes: config.ingestQueueMaxBytes,
    maxInFlight: maxInFlightFor(config.databasePoolMax),
    storeBody: config.storeBody,
  });
  recorder.start();
  return recorder;
}

/**
 * Half the pool, at most 4: the rest serves queries, readiness and the replay. Beyond a few
 * concurrent batches PostgreSQL gains nothing on two cores — the batches just grow instead.
 */
export function maxInFlightFor(poolMax: number): number {
  return Math.max(1, Math.min(4, Math.floor(poolMax / 2)));
}

/**
 * The service's spool on SPOOL_DIR. Another live process on the directory is a StartupError
 * naming it: two processes would replay (and delete) each other's segments. So is a directory
 * this user may not write, usually left by one `sudo npm start`: said with whose it is and
 * how to get it back.
 */
export async function openServiceSpool(options: SpoolOptions): Promise<Spool> {
  try {
    return await openSpool(options);
  } catch (error) {
    if (error instanceof InstanceLockedError) {
      throw new StartupError(
        `SPOOL_DIR ${error.dir} is in use by ${describeHolder(error.holder)}. ` +
          `Stop that process first (Ctrl-C in its terminal, or kill ${error.holder.pid}), or give this one its own SPOOL_DIR.`,
        { cause: error },
      );
    }
    if (!isPermissionDenied(error)) throw error;
    throw notWritable(path.resolve(options.dir), error);
  }
}

function isPermissionDenied(error: unknown): error is NodeJS.ErrnoException {
  const { code } = error as NodeJS.ErrnoException;
  return code === 'EACCES' || code === 'EPERM';
}

/**
 * The directory refused (the nearest that exists to what was written: the spool directory,
 * or `.data` above it), its owner, and the fix: the whole `.data` when the spool is the
 * checkout's default one, since the embedded PostgreSQL's files there were made by the same
 * `sudo` start.
 */
function notWritable(spoolDir: string, error: NodeJS.ErrnoException): StartupError {
  const refused = nearestExisting(
    error.path ?? (error as { address?: string }).address ?? spoolDir,
  );
  const checkoutData = path.resolve('.data');
  const toChown = spoolDir.startsWith(`${checkoutData}${path.sep}`) ? '.data' : spoolDir;
  return new StartupError(
    `SPOOL_DIR ${spoolDir}: ${currentUser()} may not write ${refused}, which belongs to ` +
      `${ownerOf(refused)} (left by a start with sudo?): take it back with ` +
      `\`sudo chown -R $(id -un) ${toChown}\`, or set SPOOL_DIR to a directory of your own.`,
    { cause: error },
  );
}

/**
 * Who this process runs as, by name when it has one: a uid with no entry in /etc/passwd (a pod's
 * runAsUser of its own) makes os.userInfo() throw, which would lose the message it is asked for.
 */
function currentUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

function nearestExisting(file: string): string {
  for (let current = path.resolve(file); ; current = path.dirname(current)) {
    try {
      if (statSync(current).isDirectory()) return current;
    } catch {
      // not there (yet), or not to be looked at: its parent then
    }
    if (current === path.dirname(current)) return current;
  }
}

/** The owner's name from /etc/passwd, else `uid N`. */
function ownerOf(file: string): string {
  const { uid } = statSync(file);
  try {
    const entry = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map((line) => line.split(':'))
      .find((fields) => fields[2] === String(uid));
    if (entry?.[0]) return entry[0];
  } catch {
    // no passwd file (not Linux, a minimal image)
  }
  return `uid ${uid}`;
}
