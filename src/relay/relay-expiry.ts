import type { Db } from '../db/database';
import type { Logger } from '../logger';
import {
  claimExpiredJobs,
  forgetQuietHosts,
  forgetRecoveredHosts,
  noteFailingHosts,
  relayHosts,
} from './relay.repository';
import type { ExpiredJobRow, ExpiryCursor, HostFailure } from './relay.repository';

/**
 * Relays whose retry schedule ran out while their host kept failing (DESIGN §10: retried on
 * RELAY_RETRY_SCHEDULE, then dead). A host paused by the circuit breaker has its relays not
 * claimed, so they never use up their schedule; without this they would stay pending for as
 * long as the host is down. The evidence is in the database (relay_hosts), written from every
 * replica's attempts, never a breaker's state (each replica has its own); the rule is
 * claimExpiredJobs's. The relay worker writes the expired jobs dead.
 */
export interface RelayExpiryOptions {
  db: Db;
  logger: Logger;
  /**
   * A host counts as failing once every attempt at it has failed for this long, and stops
   * counting when none has failed for this long.
   */
  windowMs: number;
  /** What the schedule still holds after k attempts (its last is 0). */
  remainingMs: readonly number[];
  /** The lease an expired job is claimed with, until the worker has written it dead. */
  leaseMs: number;
  /** Jobs looked at each time, in all hosts. */
  budget?: number;
}

/** What one outcome says of its host, as the worker tells expiry (an expired job's: nothing). */
export interface HostAttempt {
  host: string;
  delivered: boolean;
  /** Failed in a way that counts against its host (retry-policy.ts, isHostFailure). */
  hostFailure: boolean;
  error: string | null;
}

export interface RelayExpiry {
  /**
   * Records what a batch of requests says of their hosts: a host delivered to is not failing;
   * one whose request failed, with none delivered in the batch, is. Only changes are written.
   */
  note(attempts: readonly HostAttempt[]): Promise<void>;
  /** Claims (leases) the jobs that have expired: a bounded look each time. */
  claimExpired(): Promise<ExpiredJobRow[]>;
}

export function createRelayExpiry(options: RelayExpiryOptions): RelayExpiry {
  const { db, logger, windowMs, remainingMs, leaseMs } = options;
  // A few milliseconds of the worker's turn it runs in.
  const budget = options.budget ?? 1_000;
  // The hosts in relay_hosts, as of the last look and this replica's own notes since: a
  // delivery removes a host's row only if it is here, so that delivering to a healthy host
  // costs no statement. A row another replica added since the last look is missed that long;
  // it cannot count for expiry before it is windowMs old, by which time it has been seen.
  let knownFailing = new Set<string>();
  // Hosts noted failing while a look at relay_hosts is under way: the look may have read the
  // table before their rows were written, and must not drop them from knownFailing.
  let notedDuringLook: Set<string> | null = null;
  // The walks: where each failing host's stopped, and the host looked at last.
  const cursors = new Map<string, ExpiryCursor>();
  let lastHost = '';

  async function note(attempts: readonly HostAttempt[]): Promise<void> {
    const delivered = new Set<string>();
    for (const attempt of attempts) if (attempt.delivered) delivered.add(attempt.host);
    const failed = new Map<string, HostFailure>();
    for (const { host, hostFailure, error } of attempts) {
      if (hostFailure && !delivered.has(host)) failed.set(host, { host, error });
    }
    const recovered = [...delivered].filter((host) => knownFailing.has(host)).sort();
    try {
      await noteFailingHosts(
        db,
        [...failed.values()].sort((a, b) => (a.host < b.host ? -1 : 1)),
        windowMs,
      );
      for (const host of failed.keys()) {
        knownFailing.add(host);
        notedDuringLook?.add(host);
      }
      await forgetRecoveredHosts(db, recovered);
      for (const host of recovered) {
        knownFailing.delete(host);
        notedDuringLook?.delete(host);
      }
    } catch (error) {
      // Evidence only: at worst a relay expires later, or a delivery is missed for a while.
      logger.warn({ err: error }, 'relay: failing hosts not recorded');
    }
  }

  async function claimExpired(): Promise<ExpiredJobRow[]> {
    await forgetQuietHosts(db, windowMs);
    const noted = new Set<string>();
    notedDuringLook = noted;
    let rows: Awaited<ReturnType<typeof relayHosts>>;
    try {
      rows = await relayHosts(db, windowMs);
    } finally {
      notedDuringLook = null;
    }
    knownFailing = new Set([...rows.map((row) => row.host), ...noted]);
    const hosts = rows.filter((row) => row.expiring).map((row) => row.host);
    for (const host of cursors.keys()) if (!hosts.includes(host)) cursors.delete(host);
    // Host after host (each at most once), each walk picking up where the last one stopped: a
    // host with a large backlog is walked through in turns, and the others' turns come.
    const jobs: ExpiredJobRow[] = [];
    let left = budget;
    const start = hosts.findIndex((host) => host > lastHost);
    const order = start < 0 ? hosts : [...hosts.slice(start), ...hosts.slice(0, start)];
    for (const host of order) {
      if (left <= 0) break;
      const walk = await claimExpiredJobs(db, {
        host,
        after: cursors.get(host) ?? null,
        // No host takes the whole budget: the next ones' turns come in the same run.
        limit: Math.min(left, budget / 2),
        windowMs,
        remainingMs,
        leaseMs,
      });
      // Charged by the jobs looked at: a host with few pending costs little of the run.
      left -= Math.max(walk.looked, 1);
      lastHost = host;
      if (walk.next) cursors.set(host, walk.next);
      else cursors.delete(host);
      jobs.push(...walk.jobs);
    }
    return jobs;
  }

  return { note, claimExpired };
}

/** Why an expired relay is dead, as `GET /v1/relays` and the status page show it. */
export function expiryReason(job: ExpiredJobRow): string {
  const last = job.host_last_error ?? job.last_error ?? 'failing';
  const attempts = job.attempts === 1 ? '1 attempt' : `${job.attempts} attempts`;
  return (
    `${last} (after ${attempts}: its host failing since ` +
    `${job.host_failing_since.toISOString()}, the schedule ran out)`
  );
}
