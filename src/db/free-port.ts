import { readFileSync } from 'node:fs';
import net from 'node:net';

/**
 * A loopback TCP port for a server started a moment later (the embedded PostgreSQL, and the
 * tests' services): one nothing listens on now, never one this process was given before.
 *
 * Not one the kernel picks (listen on port 0): those come from its ephemeral range, which it
 * also draws every outgoing connection's local port from. Between the pick and the server's
 * bind, any connection made on the machine (a database client, a fetch) could take the port,
 * and the server then failed with "port … is already in use" — seen in CI, where several test
 * workers connect all the time. A port below that range is never taken that way; it is drawn at
 * random, so concurrent processes drawing too rarely meet, and checked free by listening on it.
 */
export async function freePort(): Promise<number> {
  const range = portsOutsideEphemeral();
  for (let attempt = 0; range && attempt < 100; attempt++) {
    const port = range[0] + Math.floor(Math.random() * (range[1] - range[0] + 1));
    if (givenPorts.has(port) || !(await canListen(port))) continue;
    givenPorts.add(port);
    return port;
  }
  // No such range on this machine (or all tried were busy): the kernel's pick, as before.
  for (;;) {
    const port = await kernelPort();
    if (!givenPorts.has(port)) {
      givenPorts.add(port);
      return port;
    }
  }
}

/** Ports freePort has given out in this process (the kernel may hand a closed one out again). */
const givenPorts = new Set<number>();

/** Where random ports are drawn from: above the well-known and registered-by-habit ports. */
const LOWEST = 10_000;
/** Fewer ports than this below the ephemeral range: use the kernel's pick instead. */
const ENOUGH = 1_000;

/** The ports between LOWEST and the kernel's ephemeral range, if there are enough. */
export function portsOutsideEphemeral(): [number, number] | undefined {
  const low = ephemeralLow();
  return low - LOWEST >= ENOUGH ? [LOWEST, low - 1] : undefined;
}

/** The first port of Linux's ephemeral range; elsewhere, IANA's (49152). */
function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (Number.isInteger(low)) return low!;
  } catch {
    // Not Linux, or /proc not mounted.
  }
  return 49_152;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
