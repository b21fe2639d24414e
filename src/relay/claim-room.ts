import type { BreakerState } from './circuit-breaker';
import type { ClaimLimits } from './relay.repository';

/**
 * What the relay worker claims next (DESIGN §10: a slow or failing host never delays the
 * others). Pure: the worker says what it holds and gets how many jobs to claim and how many of
 * them each host may have — or null, no claim now.
 *
 * Claims are made in bulk, once half the room is free: every claim is a statement and a commit,
 * and claiming a job or two per finished request would make the claims the bottleneck. So a
 * busy host's next jobs are claimed ahead and wait in memory for one of its
 * RELAY_HOST_CONCURRENCY slots. That must not keep other hosts' jobs from being claimed:
 * - A host holds at most `concurrency` jobs (in flight or waiting); one whose circuit is open
 *   none, half-open one (its trial). Each claim is shared among the hosts that have due jobs
 *   (relay.repository.ts), so an older backlog of one host does not fill it.
 * - A job that has waited `heldRoomMs` for its host's slot stops holding room: that host drains
 *   slower than the bulk claim assumed, and its queue would otherwise keep the room full for as
 *   long as it takes (a 1.5 s endpoint: 60 waiting jobs, 22 s). While such jobs wait, the worker
 *   claims at most once per `heldRoomMs`: other hosts' jobs are found within about that time,
 *   and the slow host's own (capped) never become a claim per relay.
 * - So does a request in flight for longer than `heldRoomMs`: each host is held to its
 *   RELAY_HOST_CONCURRENCY slots, but sixteen slow hosts' requests (an app answering in 3 s,
 *   or one app under sixteen host names) would otherwise fill the whole room and hold every
 *   other host's relays until they end. Such requests alone do not slow the claims down: one
 *   slow request must not hold every other host to a claim a second.
 * - A host with a job that has waited past `heldRoomMs` gets none of the next claim: its jobs
 *   wait in the database, not here, and the claim goes to the hosts that can take it.
 * - However stale, no more than `maxHeld` jobs are held at once (sockets and memory).
 */
export interface HeldJobs {
  now: number;
  /** Jobs this replica may hold: being sent, having their outcome written, or waiting. */
  concurrency: number;
  heldRoomMs: number;
  /** When the last claim was made (-Infinity: never). */
  lastClaimAt: number;
  /** The most jobs held at once, stale or not. */
  maxHeld: number;
  /** When each job being sent, or having its outcome written, began that. */
  inFlight: ReadonlyArray<{ since: number }>;
  /** When each job waiting for its host's slot was claimed, and for which host. */
  waiting: ReadonlyArray<{ claimedAt: number; host: string }>;
  /** Jobs each host holds on this replica, in flight or waiting (hosts holding none: absent). */
  byHost: ReadonlyMap<string, number>;
  /** Hosts whose circuit is not closed. */
  circuits: ReadonlyMap<string, BreakerState>;
}

export function nextClaim(held: HeldJobs): ClaimLimits | null {
  const isFresh = (since: number): boolean => held.now - since < held.heldRoomMs;
  let fresh = 0;
  for (const { since } of held.inFlight) if (isFresh(since)) fresh++;
  const backedUp = new Set<string>();
  for (const { claimedAt, host } of held.waiting) {
    if (isFresh(claimedAt)) fresh++;
    else backedUp.add(host);
  }
  const holding = held.inFlight.length + held.waiting.length;
  const limit = Math.min(held.concurrency - fresh, held.maxHeld - holding);
  if (limit < held.concurrency / 2) return null;
  if (backedUp.size > 0 && held.now - held.lastClaimAt < held.heldRoomMs) return null;
  const caps = new Map<string, number>();
  for (const host of new Set([...held.byHost.keys(), ...held.circuits.keys()])) {
    const circuit = held.circuits.get(host) ?? 'closed';
    const capacity = backedUp.has(host)
      ? 0
      : { closed: held.concurrency, open: 0, 'half-open': 1 }[circuit];
    caps.set(host, Math.max(0, capacity - (held.byHost.get(host) ?? 0)));
  }
  return { limit, perHost: held.concurrency, caps };
}
