import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A TCP relay in front of PostgreSQL that a test can cut and restore: while cut, open
 * connections are reset and new ones refused (ECONNREFUSED), exactly what a client sees when
 * the database goes away — without stopping the server other test files share.
 */
export interface TcpSwitch {
  /** Relays to `targetUrl`'s host and port; returns the same URL pointing at the relay. */
  relay(targetUrl: string): string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function createTcpSwitch(): Promise<TcpSwitch> {
  let target: URL | undefined;
  const sockets = new Set<Socket>();
  const server = net.createServer((client) => {
    if (!target) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await listen(server, 0);
  const port = (server.address() as AddressInfo).port;

  const stop = async (): Promise<void> => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.resetAndDestroy();
    await closed;
  };
  return {
    relay(targetUrl) {
      target = new URL(targetUrl);
      const url = new URL(targetUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    cut: stop,
    // Idempotent, like close: a test's clean-up restores whether or not the test did.
    restore: () => (server.listening ? Promise.resolve() : listen(server, port)),
    close: () => (server.listening ? stop() : Promise.resolve()),
  };
}

function listen(server: net.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}
