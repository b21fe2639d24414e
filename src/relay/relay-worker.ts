import type { Db } from '../db/database';
import type { Logger } from '../logger';
import { signingKeyRef, unboundSigningKeys } from '../signalwire/signing';
import { createFailureLog, createReasonCount, describeDatabaseFailure } from '../db/failure-reason';
import { createHostLimiter } from './circuit-breaker';
import type { BreakerOptions } from './circuit-breaker';
import { nextClaim } from './claim-room';
import type { RelayMetrics } from './relay-metrics';
import { relayRequest, withoutMessageBody } from './relay-request';
import { createRelayExpiry, expiryReason } from './relay-expiry';
import { claimDueJobs, outboxStats, recordOutcomes, releaseJobs } from './relay.repository';
import type { AttemptOutcome, ClaimedJobRow, OutboxStats, RelayJobRow } from './relay.repository';
import { decide, isHostFailure } from './retry-policy';
import type { AttemptResult } from './retry-policy';
import type { RelayTransport } from './relay-transport';

/**
 * The worker's clock for intervals (a claim's age against its lease, a host's circuit, the
 * stats' period): monotonic. A wall clock stepped back by NTP made a claim look younger than
 * it was, and a relay could start after its lease had run out, while another replica sent it.
 */
const monotonicNow = (): number => performance.now();

/**
 * Delivers the relay outbox (DESIGN §10): a loop that main.ts starts and stops. Each turn
 * claims the due jobs this replica has room for, a share for each host (claim-room.ts), sends
 * them (at most RELAY_HOST_CONCURRENCY per host, none to a host whose circuit is open) and
 * records what came of each. Decisions are pure (claim-room.ts, retry-policy.ts,
 * circuit-breaker.ts); the network sits behind RelayTransport, the database behind
 * relay.repository.ts.
 */
export interface RelayWorkerOptions {
  db: Db;
  logger: Logger;
  transport: RelayTransport;
  signingKeys: readonly string[];
  /** Per signing key, the project it is bound to (Config.signingKeyProjects); absent: none. */
  signingKeyProjects?: readonly (string | null)[];
  /**
   * The projects the configuration names (config.ts namedProjects): with several keys bound to
   * no project, they and each project's history pick the key (signing.ts relaySigningKey).
   * Absent: the first of those keys signs.
   */
  namedProjects?: ReadonlySet<string>;
  retrySchedule: readonly number[];
  hostConcurrency: number;
  timeoutMs: number;
  storeBody: boolean;
  /**
   * Jobs per replica being sent, waiting for a host slot, or having their outcome written
   * (jobs that have waited long for a slow host's slot no longer count: claim-room.ts).
   */
  concurrency?: number;
  /** Longest wait between two looks at the outbox when nothing wakes the worker. */
  pollMs?: number;
  /**
   * How long a claim's lease runs past one attempt's RELAY_TIMEOUT_MS (this slack: default
   * 30 s): the time a claimed job may wait for its host's slot, and the time its outcome's write may take.
   */
  leaseSlackMs?: number;
  /** How often the backlog metrics are refreshed. */
  statsEveryMs?: number;
  /** How often relays whose schedule ran out while their host kept failing are made dead. */
  expireEveryMs?: number;
  breaker?: Partial<Omit<BreakerOptions, 'hostConcurrency'>>;
  /** Wired by the caller once metrics exist (they read this worker's stats). */
  metrics?: RelayMetrics;
  /**
   * True while the database's schema is not one this release may write to (a newer release's
   * breaking migration, or its own not applied yet: DatabaseReadiness.schemaSuitable): no new
   * work is begun meanwhile.
   */
  paused?: () => boolean;
}

export interface RelayWorker {
  start(): void;
  /** Stops claiming, waits for the requests in flight, closes the transport. */
  stop(): Promise<void>;
  /** Something was enqueued here: look now rather than at the next poll. */
  wake(): void;
  /** For metrics: the last look at the outbox, and hosts paused on this replica. */
  stats(): { stats: OutboxStats | null; openHosts: number };
  setMetrics(metrics: RelayMetrics): void;
}

export function createRelayWorker(options: RelayWorkerOptions): RelayWorker {
  const { db, logger, transport } = options;
  const concurrency = options.concurrency ?? 64;
  const pollMs = options.pollMs ?? 1_000;
  const statsEveryMs = options.statsEveryMs ?? 5_000;
  // Longer than any attempt can take, so a lease only runs out when its replica died.
  const leaseSlackMs = options.leaseSlackMs ?? 30_000;
  const leaseMs = options.timeoutMs + leaseSlackMs;
  // A claimed job starts only this soon after its claim, so that its lease still covers the
  // whole attempt and half the slack for writing the outcome; later it is given back. Started
  // later (a slow host's slot freed late, or turns stalled on the database), an attempt could
  // outlive the lease while another replica claimed the job and sent it again.
  const startWithinMs = leaseSlackMs / 2;
  // A job waiting for its host's slot holds claim room this long at most (claim-room.ts): far
  // longer than a fast host takes to drain a bulk claim, short enough not to hold up others.
  const heldRoomMs = 1_000;
  // Requests past heldRoomMs stop holding room (slow hosts must not hold the others'): this
  // bounds what is held however many hosts are slow — requests open, jobs in memory.
  const maxHeld = 16 * concurrency;
  const maxOpenMs = options.breaker?.maxOpenMs ?? 10 * 60_000;
  const limiter = createHostLimiter({
    hostConcurrency: options.hostConcurrency,
    failureThreshold: options.breaker?.failureThreshold ?? 5,
    openMs: options.breaker?.openMs ?? 30_000,
    maxOpenMs,
  });
  const expireEveryMs = options.expireEveryMs ?? 10_000;
  // What the schedule still holds after k attempts: a job with k attempts made, never sent
  // again, would have been dead that long after it was next due.
  const remainingMs = options.retrySchedule.map((_, k) =>
    options.retrySchedule.slice(k).reduce((sum, ms) => sum + ms, 0),
  );
  remainingMs.push(0);
  const expiry = createRelayExpiry({
    db,
    logger,
    // Twice the breaker's longest pause: a host that stays down is tried (and fails) at least
    // once in that time on every replica that has its relays due, so its evidence never
    // lapses while it is down.
    windowMs: 2 * maxOpenMs,
    remainingMs,
    leaseMs,
  });
  let metrics = options.metrics;
  // Each job being sent, or outcome being written, with when it began (claim-room.ts).
  const inFlight = new Map<Promise<void>, number>();
  let stopping = false;
  let running: Promise<void> | null = null;
  let wakeUp: (() => void) | null = null;
  let woken = false;
  let lastStatsAt = -Infinity;
  let lastExpiryAt = -Infinity;
  const paused = options.paused ?? (() => false);
  let stats: OutboxStats | null = null;
  const failures = createFailureLog(logger, 'relay worker (outbox)');
  // Several keys bound to no project: a job whose reference names no key configured now (no
  // signature chose one, or it was rotated away) is signed with its project's latest
  // (claimDueJobs reads it), which only matters then.
  const knownKeyRefs =
    options.namedProjects !== undefined &&
    unboundSigningKeys(options.signingKeys, options.signingKeyProjects).length > 1
      ? options.signingKeys.map(signingKeyRef)
      : undefined;

  function wake(): void {
    woken = true;
    wakeUp?.();
  }

  function pause(ms: number): Promise<void> {
    if (woken) {
      woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        wakeUp = null;
        woken = false;
        resolve();
      }
      wakeUp = done;
    });
  }

  // Claimed jobs whose host had no free slot yet: they keep their lease and start as soon as
  // a slot frees (a message's next job is never claimed before this one is done).
  let waiting: Array<{ job: ClaimedJobRow; claimedAt: number }> = [];
  // startWaiting is running (an attempt finished inside its loop), and a pass more is asked.
  let starting = false;
  let startAgain = false;
  // Jobs each host holds here, in flight or waiting: what caps its share of the next claim.
  const heldByHost = new Map<string, number>();
  let lastClaimAt = -Infinity;

  function hold(host: string, change: number): void {
    const held = (heldByHost.get(host) ?? 0) + change;
    if (held > 0) heldByHost.set(host, held);
    else heldByHost.delete(host);
  }
  // Outcomes waiting to be written: one statement and one commit for all that accumulate
  // while the previous write runs (group commit).
  // Each with what its request said of its host, for expiry (none: no request was made).
  let outcomes: Array<{
    outcome: AttemptOutcome;
    host: string;
    hostFailure: boolean;
    done: (recorded: boolean) => void;
  }> = [];
  let writing = false;
  // Outcomes not written since the last batch that was, and why (notRecorded).
  const unrecorded = createReasonCount();

  async function turn(): Promise<number> {
    const now = monotonicNow();
    // Paused (options.paused): the jobs claimed before go back at once, nothing is claimed.
    if (paused()) {
      await releaseStale(now);
      return 0;
    }
    if (now - lastStatsAt >= statsEveryMs) {
      lastStatsAt = now;
      stats = await outboxStats(db);
    }
    await releaseStale(now);
    if (now - lastExpiryAt >= expireEveryMs) {
      lastExpiryAt = now;
      await expire();
    }
    const claim = nextClaim({
      now,
      concurrency,
      heldRoomMs,
      lastClaimAt,
      maxHeld,
      inFlight: [...inFlight.values()].map((since) => ({ since })),
      waiting: waiting.map(({ job, claimedAt }) => ({ claimedAt, host: job.host })),
      byHost: heldByHost,
      circuits: limiter.circuits(now),
    });
    if (!claim) return 0;
    lastClaimAt = now;
    // The lease runs from the claim's statement: measured from just before it (not from the
    // turn's start, before the backlog metrics and releaseStale), it ends no earlier than
    // claimedAt + leaseMs, and a slow turn does not make every job it claims late at once.
    const claimedAt = monotonicNow();
    const jobs = await claimDueJobs(db, claim, leaseMs, knownKeyRefs && { knownKeyRefs });
    for (const job of jobs) {
      waiting.push({ job, claimedAt });
      hold(job.host, 1);
    }
    startWaiting();
    return jobs.length;
  }

  /**
   * Starts every waiting job whose host has a free slot, in claim order. An attempt that
   * finishes without waiting (a job whose callback is no longer kept) calls this again from
   * inside the loop, before `waiting` has lost the job just launched: that call only asks for
   * another pass, which sees the slot it freed.
   */
  function startWaiting(): void {
    if (starting) {
      startAgain = true;
      return;
    }
    starting = true;
    try {
      do {
        startAgain = false;
        if (waiting.length === 0) return;
        const now = monotonicNow();
        const still: typeof waiting = [];
        for (const entry of waiting) {
          // Too late to start: it waits for releaseStale (the next turn) to give it back.
          const late = now - entry.claimedAt > startWithinMs;
          if (stopping || paused() || late || limiter.available(entry.job.host, now) === 0) {
            still.push(entry);
          } else launch(entry.job);
        }
        waiting = still;
      } while (startAgain);
    } finally {
      starting = false;
    }
  }

  /**
   * Waiting jobs of a host that opened its circuit, or too late to start, go back (one
   * statement).
   */
  async function releaseStale(now: number): Promise<void> {
    const giveAllBack = stopping || paused();
    const stale = waiting.filter(
      ({ job, claimedAt }) =>
        giveAllBack || limiter.state(job.host, now) === 'open' || now - claimedAt > startWithinMs,
    );
    if (stale.length === 0) return;
    waiting = waiting.filter((entry) => !stale.includes(entry));
    for (const { job } of stale) hold(job.host, -1);
    await releaseJobs(
      db,
      stale.map(({ job }) => ({ id: job.id, lease: job.lease_until! })),
    );
  }

  function launch(job: ClaimedJobRow): void {
    limiter.started(job.host);
    const attempt: Promise<void> = send(job)
      .catch((error: unknown) => {
        // Not the outcome's write (writeOutcomes says those): the lease runs out and the job
        // is sent again.
        logger.warn({ err: error, relay_id: job.id }, 'relay attempt failed; will resend');
      })
      .finally(() => {
        inFlight.delete(attempt);
        hold(job.host, -1);
        wake();
      });
    inFlight.set(attempt, monotonicNow());
  }

  async function send(job: ClaimedJobRow): Promise<void> {
    let result: AttemptResult;
    let connectionFree: Promise<void> = Promise.resolve();
    if (job.payload === null) {
      result = { kind: 'refused', reason: 'the callback is no longer kept' };
    } else {
      const request = relayRequest(
        {
          url: job.url,
          method: job.method,
          contentType: job.content_type,
          payload: job.payload,
          signingKeyRef: job.signing_key_ref,
          projectId: job.project_id,
          projectKeyRef: job.project_key_ref,
        },
        options.signingKeys,
        options.signingKeyProjects,
        options.namedProjects,
      );
      let free!: () => void;
      connectionFree = new Promise<void>((resolve) => (free = resolve));
      result = await transport.send(request, free);
    }
    // The outcome is the answer's; the host's slot is free once its connection is (the
    // answer's body read or dropped, within RELAY_TIMEOUT_MS): the next waiting job can go.
    const hostFailure = isHostFailure(result);
    void connectionFree.then(() => {
      const change = limiter.finished(job.host, hostFailure, monotonicNow());
      if (change === 'open') logger.warn({ host: job.host }, 'relay host failing: circuit open');
      else if (change === 'closed')
        logger.info({ host: job.host }, 'relay host recovered: circuit closed');
      startWaiting();
    });

    const decision = decide(result, job.attempts, options.retrySchedule);
    const outcome: AttemptOutcome = {
      id: job.id,
      lease: job.lease_until!,
      state: decision.state,
      attempted: job.payload !== null,
      delayMs: decision.state === 'pending' ? decision.delayMs : null,
      status: decision.status,
      error: decision.state === 'delivered' ? null : decision.error,
      payload: { keep: true },
    };
    if (decision.state !== 'pending') outcome.payload = payloadAfter(job, decision.state);
    // Not written (writeOutcomes said why): the lease runs out and the job is sent again.
    if (!(await record(outcome, job.host, hostFailure))) return;
    if (decision.state === 'dead') {
      metrics?.onAttempt(result.kind === 'refused' ? 'refused' : 'dead');
      logger.warn(
        { relay_id: job.id, message_id: job.message_id, host: job.host, reason: decision.error },
        'relay dead',
      );
    } else {
      metrics?.onAttempt(decision.state === 'delivered' ? 'delivered' : 'retry');
    }
  }

  /**
   * What is kept of a job's callback once it leaves pending: delivered, nothing more to send;
   * dead, kept for a retry, without the message's text. All of it with STORE_BODY=true, unless
   * the message was redacted while the job was pending: then as without it (ifRedacted).
   */
  function payloadAfter(job: RelayJobRow, state: 'delivered' | 'dead'): AttemptOutcome['payload'] {
    if (job.payload === null) return { keep: true };
    const base64 =
      state === 'dead'
        ? withoutMessageBody(job.payload, job.method, job.content_type).toString('base64')
        : null;
    return options.storeBody ? { keep: true, ifRedacted: { base64 } } : { keep: false, base64 };
  }

  /**
   * Makes dead, without another request, the relays whose schedule ran out while their host
   * kept failing (relay-expiry.ts says which). Their outcomes join the others' group commit;
   * the turn does not wait for it.
   */
  async function expire(): Promise<void> {
    const jobs = await expiry.claimExpired();
    if (jobs.length === 0) return;
    const written: Promise<void> = Promise.all(
      jobs.map((job) =>
        record(
          {
            id: job.id,
            lease: job.lease_until!,
            state: 'dead',
            attempted: false,
            delayMs: null,
            status: job.last_status,
            error: expiryReason(job),
            payload: payloadAfter(job, 'dead'),
          },
          job.host,
          false,
        ),
      ),
    )
      .then((wereWritten) => {
        // Those not written (writeOutcomes said why): their leases run out and the next
        // expiry takes them again.
        const dead = jobs.filter((_, i) => wereWritten[i]);
        if (dead.length === 0) return;
        metrics?.onExpired(dead.length);
        logger.warn(
          { relays: dead.length, hosts: [...new Set(dead.map((job) => job.host))] },
          'relays dead: their schedule ran out while their host kept failing',
        );
      })
      .finally(() => inFlight.delete(written));
    inFlight.set(written, monotonicNow());
  }

  /** Whether the outcome was written (or needed no writing: its lease was no longer held). */
  function record(outcome: AttemptOutcome, host: string, hostFailure: boolean): Promise<boolean> {
    return new Promise((resolve) => {
      outcomes.push({ outcome, host, hostFailure, done: resolve });
      void writeOutcomes();
    });
  }

  /**
   * Outcomes were not written: their jobs keep their leases, which run out, and they are sent
   * again (at least once). Said once when writes start failing and each time the reason
   * changes, not once per job (a batch holds up to RELAY_CONCURRENCY of them), as the sweep
   * says its lookups not recorded (reconcile-worker.ts).
   */
  function notRecorded(count: number, reason: string, fields: Record<string, unknown>): void {
    if (!unrecorded.failed(reason, count)) return;
    logger.warn(
      { ...fields, relays: count },
      `relay outcomes not recorded: ${reason}; those relays are sent again once their leases run out (said once until outcomes are recorded again)`,
    );
  }

  function recorded(): void {
    const count = unrecorded.succeeded();
    if (count !== undefined)
      logger.info({ not_recorded: count }, 'relay outcomes are recorded again');
  }

  async function writeOutcomes(): Promise<void> {
    if (writing) return;
    writing = true;
    try {
      while (outcomes.length > 0) {
        const batch = outcomes;
        outcomes = [];
        try {
          // A host delivered to is answering again: its jobs an app's Retry-After holds go
          // out on their schedule (recordOutcomes).
          const recovered = batch
            .filter((entry) => entry.outcome.state === 'delivered')
            .map((entry) => entry.host);
          const held = await recordOutcomes(
            db,
            batch.map((entry) => entry.outcome),
            { hosts: recovered, schedule: options.retrySchedule },
          );
          for (const entry of batch) entry.done(!held.has(entry.outcome.id));
          if (held.size === 0) recorded();
          else {
            notRecorded(held.size, 'their job rows are held by another session', {
              relay_ids: [...held],
            });
          }
        } catch (error) {
          for (const entry of batch) entry.done(false);
          const { kind, reason, code } = describeDatabaseFailure(error);
          notRecorded(batch.length, reason, { err: error, kind, code });
        }
        // About the requests made, whether or not their outcomes could be written (another
        // replica may have taken a job whose lease ran out: the request was still made).
        await expiry.note(
          batch.map(({ outcome, host, hostFailure }) => ({
            host,
            delivered: outcome.state === 'delivered',
            hostFailure,
            error: outcome.error,
          })),
        );
      }
    } finally {
      writing = false;
    }
  }

  async function loop(): Promise<void> {
    while (!stopping) {
      let started = 0;
      try {
        started = await turn();
        failures.succeeded();
      } catch (error) {
        failures.failed(error);
      }
      if (stopping) break;
      // Claimed something with room to spare: more may be due at once.
      if (started > 0 && inFlight.size < concurrency) continue;
      await pause(failures.failing ? Math.max(pollMs, 1_000) : pollMs);
    }
  }

  return {
    start() {
      if (running) return;
      stopping = false;
      running = loop();
      logger.info(
        {
          concurrency,
          host_concurrency: options.hostConcurrency,
          retry_schedule_ms: options.retrySchedule,
        },
        'relay worker started',
      );
    },
    async stop() {
      stopping = true;
      wake();
      await running;
      running = null;
      while (inFlight.size > 0) await Promise.allSettled([...inFlight.keys()]);
      // Claimed but never started: another replica may take them at once.
      await releaseStale(monotonicNow()).catch(() => undefined);
      transport.close();
    },
    wake,
    stats: () => ({ stats, openHosts: limiter.openHosts(monotonicNow()) }),
    setMetrics(m) {
      metrics = m;
    },
  };
}
