import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A TCP relay in front of PostgreSQL that can stop passing bytes: the server goes silent, as a
 * real peer does in a partition or a frozen VM — no data and no FIN either way, so a client's
 * goodbye (end(): Terminate, then its half of the connection closed) is never answered.
 */
export interface Freezer {
  /** Relays to `targetUrl`'s host and port; returns the same URL pointing at the relay. */
  relay(targetUrl: string): Promise<string>;
  freeze(): void;
  /**
   * Only the connections open now stop passing bytes; new ones pass (a failover: the old host
   * went silent, the address now reaches a new one).
   */
  freezeOpen(): void;
  close(): Promise<void>;
}

export function createFreezer(): Freezer {
  let frozen = false;
  let target: URL | undefined;
  const sockets = new Set<Socket>();
  const frozenSockets = new WeakSet<Socket>();
  // Half-open: each side's end is passed on by hand, so that a frozen one passes none.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({
      port: Number(target!.port || 5432),
      host: target!.hostname,
      allowHalfOpen: true,
    });
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      const passes = (): boolean => !frozen && !frozenSockets.has(from);
      from.on('data', (chunk) => {
        if (passes()) to.write(chunk);
      });
      from.on('end', () => {
        if (passes()) to.end();
      });
      from.on('close', () => sockets.delete(from));
      from.on('error', () => undefined);
      from.on('close', () => to.destroy());
    }
  });
  return {
    async relay(targetUrl) {
      target = new URL(targetUrl);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = new URL(targetUrl);
      url.hostname = '127.0.0.1';
      url.port = String((server.address() as AddressInfo).port);
      return url.toString();
    },
    freeze() {
      frozen = true;
    },
    freezeOpen() {
      for (const socket of sockets) frozenSockets.add(socket);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
