import ipaddr from 'ipaddr.js';
import type { Config } from '../config';

/**
 * The forward proxy SignalWire-bound traffic takes (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, read by
 * config.ts): clusters whose egress to the internet must pass one set these. Only the send
 * proxy's upstream calls and reconciliation's lookups use it. Relays to the callers' apps
 * never do: a forward proxy resolves their names itself, after the relay's address policy
 * (relay/address-policy.ts) checked what this process resolved, so an app's name could
 * point the proxy at an internal address the policy refuses.
 *
 * The decision is made once per client: SignalWire's address is one URL for the process.
 */

export interface EgressProxySettings {
  /** For http:// targets; undefined: direct. */
  httpProxy: URL | undefined;
  /** For https:// targets (SignalWire's own scheme); undefined: direct. */
  httpsProxy: URL | undefined;
  /** NO_PROXY's entries, lower-case: hosts that are reached directly. */
  noProxy: readonly string[];
}

/**
 * The proxy to reach SIGNALWIRE_SPACE_URL through; undefined: direct, as always without one
 * (the built-in simulator runs in this process and is reached directly).
 */
export function signalwireEgressProxy(
  config: Pick<Config, 'signalwireSpaceUrl' | 'egressProxy'>,
): URL | undefined {
  if (config.signalwireSpaceUrl === undefined) return undefined;
  return egressProxyFor(new URL(config.signalwireSpaceUrl), config.egressProxy);
}

/** The proxy to reach `target` through, or undefined to connect directly. */
export function egressProxyFor(target: URL, settings: EgressProxySettings): URL | undefined {
  const proxy = target.protocol === 'https:' ? settings.httpsProxy : settings.httpProxy;
  if (proxy === undefined || bypassesProxy(target, settings.noProxy)) return undefined;
  return proxy;
}

/**
 * NO_PROXY as curl reads it: `*` as the whole value is every host (elsewhere in a list it
 * names none); an entry is a host name or address,
 * optionally with a port (`host:port`, `[::1]:8080`), and names that host and every name
 * under it, a leading `.` or `*.` changing nothing (`example.com`, `.example.com` and
 * `*.example.com` all cover `api.example.com`). An address matches only itself: CIDR ranges,
 * which curl reads since 7.86, are not (an operator lists the addresses instead).
 */
export function bypassesProxy(target: URL, noProxy: readonly string[]): boolean {
  // A fully qualified name's final dot changes nothing, as in curl.
  const host = target.hostname
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
  if (noProxy.length === 1 && noProxy[0] === '*') return true;
  const port = target.port === '' ? (target.protocol === 'https:' ? 443 : 80) : Number(target.port);
  return noProxy.some((entry) => {
    if (entry === '*') return false;
    const { name, entryPort } = splitPort(entry);
    if (entryPort !== undefined && entryPort !== port) return false;
    const domain = name.replace(/^\*?\.+/, '').replace(/\.$/, '');
    if (domain === '') return false;
    return host === domain || (!isAddress(host) && host.endsWith(`.${domain}`));
  });
}

function isAddress(name: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(name) || ipaddr.IPv6.isValid(name);
}

function splitPort(entry: string): { name: string; entryPort: number | undefined } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) {
    const port = bracketed[2];
    return { name: bracketed[1]!, entryPort: port === undefined ? undefined : Number(port) };
  }
  // One colon: host:port. More: a bare IPv6 address, whose last group is no port.
  const colon = entry.lastIndexOf(':');
  if (colon !== -1 && entry.indexOf(':') === colon && /^\d+$/.test(entry.slice(colon + 1))) {
    return { name: entry.slice(0, colon), entryPort: Number(entry.slice(colon + 1)) };
  }
  return { name: entry, entryPort: undefined };
}
