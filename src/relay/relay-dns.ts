import dns from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
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
 * getaddrinfo's answer is kept, in its order (nsswitch `hosts: files dns`, as in the image):
 * - `localhost` and `*.localhost` are loopback (RFC 6761 §6.3): answered here, nothing asked;
 * - a name in the hosts file (/etc/hosts: Kubernetes' hostAliases, a pin of a name DNS also
 *   has) is answered from it, nothing asked — unless it has no address of the family asked;
 * - otherwise DNS, through resolv.conf's search list as glibc's resolver walks it: a name with
 *   fewer dots than `ndots` is asked with each search domain in turn, then as it is (so in
 *   Kubernetes, ndots:5, `receiver.dev` is the cluster's `receiver.dev.<ns>.svc.cluster.local`
 *   before any `receiver.dev` on the internet); one with `ndots` dots or more is asked as it is
 *   first, then with the domains; one ending in a dot only as it is. c-ares' resolve4/resolve6
 *   never apply the search list themselves. A "no such name" or "no address" answer moves on to
 *   the next name at once; any other failure (a name server that does not answer) ends the
 *   resolution there, as getaddrinfo's does. The whole walk has one budget.
 * The system resolver is never asked, so no relay waits for, or is refused, a thread of it.
 * Not followed: resolv.conf's LOCALDOMAIN and RES_OPTIONS environment overrides (config.ts is
 * the only reader of the environment), and name sources other than files and DNS (mDNS, LDAP).
 * Both files are read again at most every FILES_TTL_MS.
 */

export interface RelayDnsOptions {
  /** The whole resolution's budget, ms: well within the attempt's RELAY_TIMEOUT_MS. */
  timeoutMs: number;
  /** Name servers to ask instead of resolv.conf's (`127.0.0.1:5353`): a test's own server. */
  servers?: readonly string[];
  /** The hosts file: /etc/hosts unless a test gives its own. */
  hostsFile?: string;
  /** The search list and ndots: /etc/resolv.conf's unless a test gives its own. */
  search?: SearchList;
}

/** resolv.conf's `search` (or `domain`) domains, in order, and `options ndots:N`. */
export interface SearchList {
  domains: readonly string[];
  ndots: number;
}

/** One connection's resolution: its lookup, and how to stop it when the attempt is given up. */
export interface RelayResolution {
  lookup: LookupFunction;
  cancel(): void;
}

const HOSTS_FILE = '/etc/hosts';
const RESOLV_CONF = '/etc/resolv.conf';
/** How long what was read of the hosts file and resolv.conf is used before reading them again. */
const FILES_TTL_MS = 30_000;
/** glibc's cap on ndots. */
const MAX_NDOTS = 15;

/**
 * How long the other family's answer is waited for once one family has addresses: a name
 * server that drops AAAA queries (some still do) would otherwise cost every attempt the whole
 * budget. Only the addresses returned are dialled, so one arriving later is never connected to.
 */
const OTHER_FAMILY_WAIT_MS = 250;

/** Answers that say the name does not exist (NXDOMAIN) or has no address of that family. */
const NO_SUCH_NAME = new Set(['ENOTFOUND', 'ENODATA']);
/**
 * Answers after which glibc asks the next name of the search list: those, and a name server's
 * SERVFAIL (reported only if no later name is found).
 */
const NEXT_NAME = new Set([...NO_SUCH_NAME, 'ESERVFAIL']);

type Family = 4 | 6;
type Answer = { addresses: dns.LookupAddress[] } | { error: NodeJS.ErrnoException };
type HostsTable = ReadonlyMap<string, readonly dns.LookupAddress[]>;

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
    const pinned = (hostsTable(options.hostsFile ?? HOSTS_FILE).get(name) ?? []).filter((entry) =>
      families.includes(entry.family as Family),
    );
    if (pinned.length > 0) {
      process.nextTick(() => answer(null, pinned));
      return;
    }
    const search = options.search ?? searchList(RESOLV_CONF);
    stop = resolveWithDns(hostname, queryNames(hostname, search), families, options, (outcome) =>
      'addresses' in outcome ? answer(null, outcome.addresses) : answer(outcome.error, []),
    );
  }) as LookupFunction;
  return {
    lookup,
    cancel() {
      cancelled = true;
      stop();
    },
  };
}

/**
 * The names DNS is asked, in order, for `hostname` (as glibc's res_search): one ending in a dot
 * as it is only; one with fewer dots than `ndots` with each search domain, then as it is; any
 * other as it is, then with each search domain.
 */
export function queryNames(hostname: string, search: SearchList): string[] {
  const name = hostname.toLowerCase();
  if (name.endsWith('.')) return [name.slice(0, -1)];
  const withDomains = search.domains.map((domain) => `${name}.${domain}`);
  const dots = name.split('.').length - 1;
  return dots >= search.ndots ? [name, ...withDomains] : [...withDomains, name];
}

/**
 * resolv.conf's search list and ndots, as glibc reads them: the last `search` or `domain` line
 * wins (`domain x` is the list `x`), without either the domain of the machine's own name;
 * ndots 1 unless `options ndots:N` (at most 15). Comments are lines starting with `#` or `;`.
 */
export function parseResolvConf(text: string, ownHostname = ''): SearchList {
  let domains: string[] | undefined;
  let ndots = 1;
  for (const line of text.split('\n')) {
    if (/^\s*[#;]/.test(line)) continue;
    const [keyword, ...args] = line.trim().split(/\s+/);
    if (keyword === 'search') domains = args;
    else if (keyword === 'domain' && args[0]) domains = [args[0]];
    else if (keyword === 'options') {
      for (const option of args) {
        const match = /^ndots:(\d+)$/.exec(option);
        if (match) ndots = Math.min(MAX_NDOTS, Number(match[1]));
      }
    }
  }
  const own = ownHostname.indexOf('.');
  domains ??= own > 0 ? [ownHostname.slice(own + 1)] : [];
  return {
    domains: domains
      .map((domain) => domain.replace(/\.$/, '').toLowerCase())
      .filter((domain) => domain.length > 0),
    ndots,
  };
}

/**
 * A hosts file's names (lower-cased; aliases too) and their addresses in the file's order,
 * IPv4 and IPv6; `#` starts a comment, a line whose first field is no address is skipped.
 */
export function parseHosts(text: string): HostsTable {
  const table = new Map<string, dns.LookupAddress[]>();
  for (const line of text.split('\n')) {
    const [address, ...names] = line.replace(/#.*$/, '').trim().split(/\s+/);
    const family = net.isIP(address ?? '');
    if (family === 0) continue;
    for (const name of names) {
      const key = name.replace(/\.$/, '').toLowerCase();
      const entries = table.get(key) ?? [];
      if (!entries.some((entry) => entry.address === address)) {
        entries.push({ address: address!, family });
      }
      table.set(key, entries);
    }
  }
  return table;
}

/** A file's parse, read again once older than FILES_TTL_MS; a file that cannot be read is empty. */
const readFiles = new Map<string, { readAt: number; value: unknown }>();
function cachedFile<T>(path: string, kind: string, parse: (text: string) => T): T {
  const key = `${kind}:${path}`;
  const cached = readFiles.get(key);
  if (cached && Date.now() - cached.readAt < FILES_TTL_MS) return cached.value as T;
  let text = '';
  try {
    // A few hundred bytes of a local file, at most twice a FILES_TTL_MS: read here rather than
    // queued on the thread pool behind whatever holds it.
    text = fs.readFileSync(path, 'utf8');
  } catch {
    // No such file: no entries, as getaddrinfo.
  }
  const value = parse(text);
  readFiles.set(key, { readAt: Date.now(), value });
  return value;
}

function hostsTable(path: string): HostsTable {
  return cachedFile(path, 'hosts', parseHosts);
}

function searchList(path: string): SearchList {
  return cachedFile(path, 'resolv', (text) => parseResolvConf(text, os.hostname()));
}

/** The families a lookup asks for: both (IPv4 first) unless it names one. */
function wantedFamilies(family: dns.LookupOptions['family']): Family[] {
  if (family === 4 || family === 'IPv4') return [4];
  if (family === 6 || family === 'IPv6') return [6];
  return [4, 6];
}

/**
 * `names` asked in turn, each with A and AAAA in parallel, with c-ares' own per-query timeout
 * and a deadline over the whole walk: the first name's addresses of both families together,
 * or the error that says why there are none (a definite "no such name" only when every name
 * and family says so). Returns a cancel.
 */
function resolveWithDns(
  hostname: string,
  names: readonly string[],
  families: readonly Family[],
  options: RelayDnsOptions,
  done: (outcome: Answer) => void,
): () => void {
  // Two tries, each a third of the budget (c-ares doubles the second): the budget with one
  // name server; the deadline below bounds it whatever resolv.conf lists and however many
  // names the search list makes.
  const resolver = new dns.Resolver({
    timeout: Math.max(1, Math.floor(options.timeoutMs / 3)),
    tries: 2,
  });
  if (options.servers) resolver.setServers(options.servers);
  let settled = false;
  let grace: NodeJS.Timeout | undefined;
  /** The name being asked, its answers so far. */
  let answers = new Map<Family, Answer>();
  /** Why the names asked before had no address: a SERVFAIL is told rather than NXDOMAIN. */
  let passed: NodeJS.ErrnoException | undefined;
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
  const ask = (index: number): void => {
    const name = names[index];
    if (name === undefined) {
      return finish({
        error:
          passed && !NO_SUCH_NAME.has(passed.code ?? '')
            ? passed
            : Object.assign(new Error(`${hostname}: no such name (asked ${names.join(', ')})`), {
                code: passed?.code ?? 'ENOTFOUND',
                hostname,
              }),
      });
    }
    const current = new Map<Family, Answer>();
    answers = current;
    const settle = (family: Family, answer: Answer): void => {
      if (settled || answers !== current) return;
      current.set(family, answer);
      const found = addresses();
      if (current.size === families.length) {
        if (found.length > 0) return finish({ addresses: found });
        const errors = [...current.values()].flatMap((a) => ('error' in a ? [a.error] : []));
        // A family with no records and another that timed out is no definite answer.
        const error = errors.find((e) => !NO_SUCH_NAME.has(e.code ?? '')) ?? errors[0]!;
        if (!NEXT_NAME.has(error.code ?? '')) return finish({ error });
        if (!passed || NO_SUCH_NAME.has(passed.code ?? '')) passed = error;
        return ask(index + 1);
      }
      if (found.length > 0 && !grace) {
        grace = setTimeout(() => finish({ addresses: addresses() }), OTHER_FAMILY_WAIT_MS);
      }
    };
    for (const family of families) {
      const reply = (error: NodeJS.ErrnoException | null, found: string[]): void => {
        if (error) settle(family, { error });
        else if (found.length === 0)
          settle(family, { error: Object.assign(new Error(name), { code: 'ENODATA' }) });
        else settle(family, { addresses: found.map((address) => ({ address, family })) });
      };
      if (family === 4) resolver.resolve4(name, reply);
      else resolver.resolve6(name, reply);
    }
  };
  ask(0);
  return () => {
    if (settled) return;
    settled = true;
    clearTimeout(deadline);
    clearTimeout(grace);
    resolver.cancel();
  };
}
