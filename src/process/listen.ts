import type { Server } from 'node:http';
import type { Express } from 'express';
import { createFastServer } from '../http/fast-server';
import { StartupError } from './startup-error';

/**
 * Starts a listener. A port that is taken or not allowed is a StartupError naming the
 * variable that sets it (`PORT`, `INTERNAL_PORT`, …), not a stack trace: the usual cause is
 * another copy of the service, or another program, on the default port.
 */
export function listen(
  app: Express,
  port: number,
  host: string,
  variable: string,
): Promise<Server> {
  // The fast server spares Express its per-request prototype swap (src/http/fast-server.ts).
  const server = createFastServer(app);
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(describeListenError(error, port, host, variable)),
    );
    server.listen(port, host, () => {
      server.removeAllListeners('error');
      resolve(server);
    });
  });
}

export function describeListenError(
  error: NodeJS.ErrnoException,
  port: number,
  host: string,
  variable: string,
): Error {
  if (error.code === 'EADDRINUSE') {
    return new StartupError(
      `${variable}=${port}: port ${port} on ${host} is already in use (another sw-status, or another program). ` +
        `Stop it, or set ${variable} to a free port.`,
      { cause: error },
    );
  }
  if (error.code === 'EACCES') {
    return new StartupError(
      `${variable}=${port}: not allowed to listen on port ${port} on ${host} (ports below 1024 need privileges). Set ${variable} to a port above 1023.`,
      { cause: error },
    );
  }
  if (error.code === 'EADDRNOTAVAIL') {
    return new StartupError(
      `HOST=${host}: this machine has no such address to listen on. Set HOST to one of its addresses, or 0.0.0.0 / :: for all.`,
      { cause: error },
    );
  }
  return error;
}

/**
 * Stops accepting connections and lets in-flight requests finish; idle keep-alive connections
 * are closed so close() can return. Resolves false when connections had to be cut after
 * `deadlineMs` (a client trickling a body must not hold the pod past its grace period).
 */
export function closeServer(server: Server, deadlineMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const deadline = setTimeout(
      () => {
        server.closeAllConnections();
        resolve(false);
      },
      Math.max(0, deadlineMs),
    );
    server.close(() => {
      clearTimeout(deadline);
      resolve(true);
    });
    server.closeIdleConnections();
  });
}

export function address(server: Server): string {
  const info = server.address();
  return typeof info === 'object' && info ? `${info.address}:${info.port}` : String(info);
}
