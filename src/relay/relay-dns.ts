import dns from 'node:dns';
import type { LookupFunction } from './safe-agent';

/**
 * How a relay turns its callback host's name into addresses (DESIGN §10: a failing destination
 * host never delays other hosts). Not with dns.lookup: getaddrinfo runs on libuv's thread pool
 * (4 threads, shared with every other lookup, file I/O and crypto in the process) and can be
 * neither timed out nor cancelled, so a tenant whose name server never answers — wildcard
 * names, one per message, which per-host limits and circuit breakers do not see as one host —
 * held every thread for 5–20 s a lookup, each retry starting another, and other apps' relays,
 * the proxy's calls to SignalWire, new database connections by name and the spool's files all
 * waited behind them. c-ares (dns.Resolver) asks the name servers over sockets on the event
 * loop, gives up within the budget, and is cancelled with its connection.
 *
 * What DNS does not answer and the system does:
 * - `localhost` and `*.localhost` are loopback (RFC 6761 §6.3): answered here, nothing asked;
 * - a name only in /etc/hosts, or found through resolv.conf's search list (a cluster-internal
 *   `app.ns.svc` where RELAY_ALLOWED_NETWORKS allows such addresses): when DNS says for sure that
 *   there is no such name, the system resolver is asked, but never by more than
 *   SYSTEM_LOOKUPS relays at once in the process — when they are taken the attempt fails at
 *   once, to be retried, rather than queueing for a thread.
 * A name server that does not answer is no reason to ask the system resolver: it would ask the
 * same server, from a thread it then holds (that is the silent zone above).
 */

export interface RelayDnsOptions {
  /** The whole resolution's budget, ms: well within the attempt's RELAY_TIMEOUT_MS. */
  timeoutMs: number;
  /** Name servers to ask instead of resolv.conf's (`127.0.0.1:5353`): a test's own server. */
  servers?: readonly string[];
}

/** One connection's resolution: its lookup, and how to stop it when the attempt is given up. */
export interface RelayResolution {
  lookup: LookupFunction;
  cancel(): void;
}

/**
 * System resolver lookups (getaddrinfo, a thread-pool thread each) the relays may have
 * outstanding in the process, an abandoned one counting until it returns: two of the pool's
 * four threads at most, whatever the names' name servers do.
 */
export const SYSTEM_LOOKUPS = 2;

/**
 * Process-wide, unlike everything else here, because the thread pool it rations is: every
 * relay transport in the process (one per worker) shares it.
 */
let systemLookupsOutstanding = 0;

/**
 * How long the other family's answer is waited for once one family has addresses: a name
 * server that drops AAAA queries (some still do) would otherwise cost every attempt the whole
 * budget. Only the addresses returned are dialled, so one arriving later is never connected to.
 */
const OTHER_FAMILY_WAIT_MS = 250;

/** Answers that say the name does not exist (NXDOMAIN) or has no address of that family. */
const NO_SUCH_NAME = new Set(['ENOTFOUND', 'ENODATA']);

type Family = 4 | 6;
type Answer = { addresses: dns.LookupAddress[] } | { error: NodeJS.ErrnoException };

export function relayResolution(options: RelayDnsOptions): RelayResolution {
  let cancelled = false;
  let stop = (): void => undefined;
  const lookup = ((
    hostname: string,
    lookupOptions: dns.LookupOptions,
    callback: (
      error: NodeJS.ErrnoException | null,
      address?: string | dns.LookupAddress[],
      family?: number,
    ) => void,
  ) => {
    const answer = (error: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]): void => {
      if (cancelled) return;
      if (error) return callback(error);
      if (addresses.length === 0) {
        return callback(Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }));
      }
      if (lookupOptions.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    };
    const families = wantedFamilies(lookupOptions.family);
    const name = hostname.replace(/\.$/, '').toLowerCase();
    if (name === 'localhost' || name.endsWith('.localhost')) {
      const loopback = { 4: '127.0.0.1', 6: '::1' } as const;
      const addresses = families.map((family) => ({ address: loopback[family], family }));
      process.nextTick(() => answer(null, addresses));
      return;
    }
    stop = resolveWithDns(hostname, families, options, (outcome) => {
      if ('addresses' in outcome) return answer(null, outcome.addresses);
      if (!NO_SUCH_NAME.has(outcome.error.code ?? '')) return answer(outcome.error, []);
      systemLookup(hostname, lookupOptions.family, answer);
    });
  }) as LookupFunction;
  return {
    lookup,
    cancel() {
      cancelled = true;
      stop();
    },
  };
}

/** The families a lookup asks for: both (IPv4 first) unless it names one. */
function wantedFamilies(family: dns.LookupOptions['family']): Family[] {
  if (family === 4 || family === 'IPv4') return [4];
  if (family === 6 || family === 'IPv6') return [6];
  return [4, 6];
}

/**
 * A and AAAA asked in parallel from the name servers, with c-ares' own per-query timeout and a
 * deadline over the whole; the answers of both families together, or the error that says why
 * there are none (a definite "no such name" only when every family says so). Returns a cancel.
 */
function resolveWithDns(
  hostname: string,
  families: readonly Family[],
  options: RelayDnsOptions,
  done: (outcome: Answer) => void,
): () => void {
  // Two tries, each a third of the budget (c-ares doubles the second): the budget with one
  // name server; the deadline below bounds it whatever resolv.conf lists.
  const resolver = new dns.Resolver({
    timeout: Math.max(1, Math.floor(options.timeoutMs / 3)),
    tries: 2,
  });
  if (options.servers) resolver.setServers(options.servers);
  const answers = new Map<Family, Answer>();
  let settled = false;
  let grace: NodeJS.Timeout | undefined;
  const finish = (outcome: Answer): void => {
    if (settled) return;
    settled = true;
    clearTimeout(deadline);
    clearTimeout(grace);
    resolver.cancel();
    done(outcome);
  };
  const addresses = (): dns.LookupAddress[] =>
    families.flatMap((family) => {
      const answer = answers.get(family);
      return answer && 'addresses' in answer ? answer.addresses : [];
    });
  const deadline = setTimeout(() => {
    const found = addresses();
    if (found.length > 0) return finish({ addresses: found });
    finish({
      error: Object.assign(
        new Error(`${hostname}: no answer from the name server within ${options.timeoutMs} ms`),
        { code: 'ETIMEOUT', hostname },
      ),
    });
  }, options.timeoutMs);
  const settle = (family: Family, answer: Answer): void => {
    if (settled) return;
    answers.set(family, answer);
    const found = addresses();
    if (answers.size === families.length) {
      if (found.length > 0) return finish({ addresses: found });
      const errors = [...answers.values()].flatMap((a) => ('error' in a ? [a.error] : []));
      // A family with no records and another that timed out is no definite answer.
      return finish({
        error: errors.find((e) => !NO_SUCH_NAME.has(e.code ?? '')) ?? errors[0]!,
      });
    }
    if (found.length > 0 && !grace) {
      grace = setTimeout(() => finish({ addresses: addresses() }), OTHER_FAMILY_WAIT_MS);
    }
  };
  for (const family of families) {
    const reply = (error: NodeJS.ErrnoException | null, found: string[]): void => {
      if (error) settle(family, { error });
      else if (found.length === 0)
        settle(family, { error: Object.assign(new Error(hostname), { code: 'ENODATA' }) });
      else settle(family, { addresses: found.map((address) => ({ address, family })) });
    };
    if (family === 4) resolver.resolve4(hostname, reply);
    else resolver.resolve6(hostname, reply);
  }
  return () => {
    if (settled) return;
    settled = true;
    clearTimeout(deadline);
    clearTimeout(grace);
    resolver.cancel();
  };
}

/**
 * The system resolver (getaddrinfo: /etc/hosts, the search list), at most SYSTEM_LOOKUPS at
 * once in the process. It cannot be cancelled: an abandoned lookup keeps its slot until it
 * returns, which is the point — its thread is still taken.
 */
function systemLookup(
  hostname: string,
  family: dns.LookupOptions['family'],
  answer: (error: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
): void {
  if (systemLookupsOutstanding >= SYSTEM_LOOKUPS) {
    const busy = Object.assign(
      new Error(
        `${hostname}: not in DNS and the system resolver is busy (${SYSTEM_LOOKUPS} lookups outstanding); retried later`,
      ),
      { code: 'EAI_AGAIN', hostname },
    );
    return answer(busy, []);
  }
  systemLookupsOutstanding++;
  // dns.lookup read at the call, not bound at import: tests stand in for getaddrinfo there.
  dns.lookup(hostname, { family: family ?? 0, all: true }, (error, addresses) => {
    systemLookupsOutstanding--;
    if (error) return answer(error, []);
    answer(null, addresses);
  });
}
