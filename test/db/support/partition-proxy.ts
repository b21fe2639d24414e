import net from 'node:net';

/**
 * A TCP relay in front of a server that can be "partitioned": while frozen, bytes are
 * swallowed in both directions and the connections stay open — what a network partition,
 * a hung VM or a host that vanished without a RST looks like to the client (TCP keepalive on
 * Linux would notice after ~30 s + ~11 min; a frozen relay never). Connections opened while
 * frozen hang the same way.
 */
export interface PartitionProxy {
  url: string;
  freeze(): void;
  close(): Promise<void>;
}

export async function startPartitionProxy(target: string): Promise<PartitionProxy> {
  const upstream = new URL(target);
  let frozen = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const server = net.connect(Number(upstream.port), upstream.hostname);
    for (const s of [client, server]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d) => void (!frozen && server.write(d)));
    server.on('data', (d) => void (!frozen && client.write(d)));
    client.on('end', () => !frozen && server.end());
    server.on('end', () => !frozen && client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const url = new URL(target);
  url.port = String(port);
  return {
    url: url.toString(),
    freeze: () => void (frozen = true),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
