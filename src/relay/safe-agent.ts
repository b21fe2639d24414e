import type dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { AddressGuard } from './address-policy';
import { relayResolution } from './relay-dns';
import type { SearchList } from './relay-dns';

/**
 * http(s) agents that refuse to connect to an address the guard refuses, checked on the
 * address actually connected to: a literal host before connecting, and every address a name
 * resolves to inside the socket's own lookup, so what was checked is what is dialled (no
 * second resolution for DNS rebinding to change). Names are resolved as relay-dns.ts says
 * (the hosts file, then DNS through the search list with c-ares, never the thread pool's
 * getaddrinfo), every address of the answer checked, the hosts file's too; the resolution cancelled when its socket closes
 * (the attempt given up). The pattern of azu/request-filtering-agent,
 * with the address rules in address-policy.ts (ipaddr.js): that library's allow list logs a
 * console warning for every address of the other IP family than a listed CIDR, and it ships
 * as ES modules only, which Jest cannot load before Node 24.9.
 */

/** How long a connection to a receiver may stay idle before the relay closes it. */
export const IDLE_CONNECTION_MS = 4_000;

export type LookupFunction = NonNullable<net.TcpSocketConnectOpts['lookup']>;

export class AddressRefusedError extends Error {
  readonly code = 'ERR_RELAY_ADDRESS_REFUSED';
  constructor(reason: string) {
    super(reason);
    this.name = 'AddressRefusedError';
  }
}

export interface SafeAgents {
  http: http.Agent;
  https: https.Agent;
  destroy(): void;
}

export function createSafeAgents(
  guard: AddressGuard,
  options: {
    maxSockets: number;
    /** Budget of a name's resolution, ms (relay-dns.ts). */
    resolveTimeoutMs: number;
    /** Tests: name servers to ask instead of resolv.conf's. */
    dnsServers?: readonly string[];
    /** Tests: a hosts file instead of /etc/hosts. */
    hostsFile?: string;
    /** Tests: a search list and ndots instead of resolv.conf's. */
    dnsSearch?: SearchList;
    /** Tests: answers for every name instead of resolving it (still guarded). */
    lookup?: LookupFunction;
  },
): SafeAgents {
  // Idle connections are closed after a few seconds, not left to the receiver: one that never
  // closes them would otherwise hold a socket per host name for the process's life (a wildcard
  // name per message: one per message), and a name that moved to another address would never
  // be resolved again while the old connection lived. 4 s is below a Node receiver's own 5 s
  // keep-alive (what Node's agent makes of its `Keep-Alive: timeout=5` hint), so reusing a
  // connection rarely races the receiver closing it. Only idle sockets are closed by it: an
  // attempt in progress is bounded by relay-transport.ts's own timer.
  const agentOptions = {
    keepAlive: true,
    maxSockets: options.maxSockets,
    maxFreeSockets: 4,
    timeout: IDLE_CONNECTION_MS,
  };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  for (const agent of [httpAgent, httpsAgent]) {
    const original = agent.createConnection.bind(agent);
    agent.createConnection = (connectOptions, callback): Duplex | null | undefined => {
      const host = (connectOptions.host ?? connectOptions.hostname ?? '').replace(/^\[|\]$/g, '');
      if (net.isIP(host) !== 0) {
        const problem = guard.problem(host);
        if (problem) return refusedSocket(new AddressRefusedError(problem), callback);
      }
      const resolution = options.lookup
        ? { lookup: options.lookup, cancel: () => undefined }
        : relayResolution({
            timeoutMs: options.resolveTimeoutMs,
            ...(options.dnsServers && { servers: options.dnsServers }),
            ...(options.hostsFile && { hostsFile: options.hostsFile }),
            ...(options.dnsSearch && { search: options.dnsSearch }),
          });
      const lookup = guardedLookup(guard, resolution.lookup);
      const socket = original({ ...connectOptions, lookup } as typeof connectOptions, callback);
      // Destroyed (the attempt's time is up) while still resolving: stop asking.
      socket?.once('close', resolution.cancel);
      return socket;
    };
  }
  return {
    http: httpAgent,
    https: httpsAgent,
    destroy() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

/** A lookup that fails when any resolved address is refused (all of them, with `all`). */
function guardedLookup(guard: AddressGuard, lookup: LookupFunction): LookupFunction {
  return ((hostname: string, options: dns.LookupOptions, callback: LookupCallback) => {
    lookup(hostname, options, ((error, address, family) => {
      if (error) return callback(error, address, family);
      const addresses =
        typeof address === 'string' ? [{ address, family }] : (address as dns.LookupAddress[]);
      for (const entry of addresses) {
        const problem = guard.problem(entry.address);
        if (problem)
          return callback(new AddressRefusedError(`${hostname}: ${problem}`), address, family);
      }
      callback(null, address, family);
    }) as LookupCallback);
  }) as LookupFunction;
}

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | dns.LookupAddress[],
  family?: number,
) => void;

function refusedSocket(
  error: Error,
  callback: ((err: Error | null, stream: Duplex) => void) | undefined,
): Duplex {
  const socket = new net.Socket();
  if (callback) callback(error, socket);
  else process.nextTick(() => socket.destroy(error));
  return socket;
}
