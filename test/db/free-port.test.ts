import { readFileSync } from 'node:fs';
import net from 'node:net';
import { freePort, portsOutsideEphemeral } from '../../src/db/free-port';

/**
 * freePort's ports are for a server started a moment later: one the kernel could hand to an
 * outgoing connection meanwhile (its ephemeral range) made that server fail to bind in CI.
 */

const [ephemeralLow, ephemeralHigh] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
  .trim()
  .split(/\s+/)
  .map(Number) as [number, number];

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

test('When ports are asked for, then each is below the kernel’s ephemeral range, free to listen on, and never given twice', async () => {
  expect(portsOutsideEphemeral()).toEqual([10_000, ephemeralLow - 1]);
  const ports: number[] = [];
  for (let i = 0; i < 50; i++) ports.push(await freePort());
  expect(new Set(ports).size).toBe(ports.length);
  for (const port of ports) {
    expect(port).toBeGreaterThanOrEqual(10_000);
    expect(port).toBeLessThan(ephemeralLow);
  }
  const servers = await Promise.all(ports.map(listen));
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

test('When outgoing connections are made, then their local ports are all in the ephemeral range freePort stays out of', async () => {
  // The premise of the rule above, on this machine: what a client connection's local port is.
  const server = await listen(0);
  const { port } = server.address() as net.AddressInfo;
  const locals = await Promise.all(
    Array.from(
      { length: 20 },
      () =>
        new Promise<number>((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => {
            resolve(socket.localPort!);
            socket.destroy();
          });
          socket.once('error', reject);
        }),
    ),
  );
  await new Promise((resolve) => server.close(resolve));
  for (const local of locals) {
    expect(local).toBeGreaterThanOrEqual(ephemeralLow);
    expect(local).toBeLessThanOrEqual(ephemeralHigh);
  }
});
