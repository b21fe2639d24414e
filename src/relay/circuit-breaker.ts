/**
 * Per-host circuit breaker and concurrency limit (DESIGN §10: a failing destination never
 * delays the others). In memory, per replica, deterministic: time is passed in.
 *
 * Closed: up to `hostConcurrency` requests at once. After `failureThreshold` failures in a
 * row the host is open for `openMs` (doubling on each reopening, up to `maxOpenMs`): its jobs
 * are not even claimed. Then half-open: one
 * trial request; success closes it, failure reopens. A host sent nothing for `maxOpenMs` after
 * its last request and its circuit's opening is forgotten (closed again): apps retired or URLs
 * mistyped must not stay in memory, and in every claim (claim-room.ts), for the process's life.
 */
export interface BreakerOptions {
  hostConcurrency: number;
  failureThreshold: number;
  openMs: number;
  maxOpenMs: number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

interface HostState {
  inFlight: number;
  failures: number;
  openUntil: number;
  openMs: number;
  /** When its last request ended. */
  lastFinishedAt: number;
}

export interface HostLimiter {
  /** Requests the host may take now: 0 while open or saturated. */
  available(host: string, now: number): number;
  /** Hosts that may take no request now. */
  blocked(now: number): string[];
  /** Hosts whose circuit is not closed, with its state: the claim takes none or one of theirs. */
  circuits(now: number): Map<string, BreakerState>;
  started(host: string): void;
  finished(host: string, failed: boolean, now: number): BreakerState | null;
  state(host: string, now: number): BreakerState;
  openHosts(now: number): number;
}

export function createHostLimiter(options: BreakerOptions): HostLimiter {
  const hosts = new Map<string, HostState>();
  const get = (host: string): HostState => {
    let state = hosts.get(host);
    if (!state) {
      state = { inFlight: 0, failures: 0, openUntil: 0, openMs: 0, lastFinishedAt: 0 };
      hosts.set(host, state);
    }
    return state;
  };
  const stateOf = (s: HostState | undefined, now: number): BreakerState => {
    if (!s || s.failures < options.failureThreshold) return 'closed';
    return now < s.openUntil ? 'open' : 'half-open';
  };
  const available = (host: string, now: number): number => {
    const s = hosts.get(host);
    const capacity = { closed: options.hostConcurrency, open: 0, 'half-open': 1 }[stateOf(s, now)];
    return Math.max(0, capacity - (s?.inFlight ?? 0));
  };
  return {
    available,
    blocked(now) {
      return [...hosts.keys()].filter((host) => available(host, now) === 0);
    },
    circuits(now) {
      const circuits = new Map<string, BreakerState>();
      for (const [host, s] of hosts) {
        if (s.inFlight === 0 && now - Math.max(s.openUntil, s.lastFinishedAt) > options.maxOpenMs) {
          hosts.delete(host);
          continue;
        }
        const state = stateOf(s, now);
        if (state !== 'closed') circuits.set(host, state);
      }
      return circuits;
    },
    started(host) {
      get(host).inFlight++;
    },
    finished(host, failed, now) {
      const s = get(host);
      s.inFlight--;
      s.lastFinishedAt = now;
      const before = stateOf(s, now);
      if (!failed) {
        s.failures = 0;
        s.openMs = 0;
        s.openUntil = 0;
      } else {
        s.failures++;
        if (s.failures >= options.failureThreshold && (before !== 'open' || s.openUntil === 0)) {
          s.openMs = s.openMs === 0 ? options.openMs : Math.min(s.openMs * 2, options.maxOpenMs);
          s.openUntil = now + s.openMs;
        }
      }
      // Forget healthy idle hosts: the map must not grow with every app ever relayed to.
      if (s.inFlight === 0 && s.failures === 0) hosts.delete(host);
      const after = stateOf(hosts.get(host), now);
      return after === before ? null : after;
    },
    state: (host, now) => stateOf(hosts.get(host), now),
    openHosts(now) {
      return [...hosts.values()].filter((s) => stateOf(s, now) === 'open').length;
    },
  };
}
