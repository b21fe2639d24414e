import ipaddr from 'ipaddr.js';

/**
 * Which addresses and URLs a relay may reach (DESIGN §10 "No SSRF"). Pure: the HTTP agent
 * (safe-agent.ts) asks `addressProblem` about every address it is about to connect to, after
 * DNS resolution, so a name that resolves (or re-resolves: DNS rebinding) to an internal
 * address is refused at connect time; `urlProblem` refuses what is wrong before any I/O.
 */

/**
 * Public-looking addresses that are a cloud platform's own service inside every VM: Azure's
 * WireServer (168.63.129.16). The metadata services of AWS, GCP and Azure (169.254.169.254,
 * fd00:ec2::254) and Alibaba's (100.100.100.200) are link-local, unique-local or CGNAT,
 * which the range check refuses already.
 */
const INTERNAL_UNICAST = ['168.63.129.16/32'].map((cidr) => ipaddr.parseCIDR(cidr));

/**
 * Deprecated IPv4-compatible IPv6 addresses (`::a.b.c.d`, RFC 4291 §2.5.5.1), which ipaddr.js
 * calls unicast: no public host has one, and a host that still routes them (automatic
 * tunnelling) reaches the IPv4 address inside — `[::127.0.0.1]`, `[::a9fe:a9fe]`.
 */
const IPV4_COMPATIBLE = ipaddr.parseCIDR('::/96');

export interface DestinationPolicy {
  /** CIDRs allowed although not public unicast (RELAY_ALLOWED_NETWORKS). */
  allowedNetworks: readonly string[];
  /** Plain http allowed (always outside production; RELAY_ALLOW_HTTP in production). */
  allowHttp: boolean;
}

/** Parsed once per policy: the agent asks on every connection. */
export interface AddressGuard {
  problem(address: string): string | null;
}

export function addressGuard(allowedNetworks: readonly string[]): AddressGuard {
  const networks = allowedNetworks.map((cidr) => ipaddr.parseCIDR(cidr));
  return { problem: (address) => addressProblem(address, networks) };
}

/**
 * Why a relay must not connect to `address` (an IP literal), or null when it may. Only public
 * unicast addresses are allowed — not private, loopback, link-local (169.254.169.254, the cloud
 * metadata service), CGNAT, unique-local, IPv4-mapped (`::ffff:127.0.0.1`), NAT64, 6to4,
 * Teredo, multicast, reserved or unspecified (0.0.0.0, which reaches this host) — unless the
 * address lies in one of the allowed networks, matched in its own family: an IPv4-mapped
 * address is never an IPv4 one.
 */
export function addressProblem(
  address: string,
  allowedNetworks: ReadonlyArray<[ipaddr.IPv4 | ipaddr.IPv6, number]>,
): string | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // parse, not process: process would turn ::ffff:127.0.0.1 into 127.0.0.1 and let it
    // through an allowed 127.0.0.0/8.
    parsed = ipaddr.parse(address);
  } catch {
    return `${address} is not an IP address`;
  }
  for (const network of allowedNetworks) {
    if (network[0].kind() === parsed.kind() && parsed.match(network)) return null;
  }
  const range = parsed.range();
  if (range === 'unicast' && parsed.kind() === 'ipv6' && parsed.match(IPV4_COMPATIBLE)) {
    return `address ${address} is not allowed (IPv4-compatible); RELAY_ALLOWED_NETWORKS can allow it`;
  }
  if (range === 'unicast') {
    const internal = INTERNAL_UNICAST.find(
      (network) => network[0].kind() === parsed.kind() && parsed.match(network),
    );
    return internal
      ? `address ${address} is not allowed (a cloud platform's internal service); RELAY_ALLOWED_NETWORKS can allow it`
      : null;
  }
  return `address ${address} is not allowed (${range}); RELAY_ALLOWED_NETWORKS can allow it`;
}

/**
 * Why a relay to `url` must not be attempted at all, or null. Checks what needs no I/O: the
 * scheme, https-only in production, credentials in the URL, and a literal IP host (WHATWG URL
 * parsing first, so `http://2130706433/` is 127.0.0.1 and `[::ffff:7f00:1]` is checked as
 * the IPv4-mapped address it is). Names are checked when they resolve, by the agent.
 */
export function urlProblem(
  url: string,
  policy: DestinationPolicy,
  guard: AddressGuard,
): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'the callback URL is not a valid URL';
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    return `scheme ${parsed.protocol} is not allowed (http or https only)`;
  }
  if (parsed.protocol === 'http:' && !policy.allowHttp) {
    return 'plain http is not allowed in production (RELAY_ALLOW_HTTP=true allows it)';
  }
  if (parsed.username !== '' || parsed.password !== '') {
    return 'credentials in the callback URL are not sent';
  }
  const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
  if (ipaddr.isValid(host) && isIpLiteral(host)) return guard.problem(host);
  return null;
}

/** ipaddr.isValid also accepts `0x7f.1` and friends, which WHATWG URL has already normalised. */
function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
