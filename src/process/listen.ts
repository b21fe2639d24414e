import type { Server } from 'node:http';
import type { Express } from 'express';
import type { Config } from '../config';
import { bindAddresses, createListener, listenOn, listenerSettings } from '../http/listener';
import type { Logger } from '../logger';
import { StartupError } from './startup-error';

/**
 * Starts a listener with the service's connection settings (timeouts, keep-alive, connection
 * bound, the dual-stack fallback: src/http/listener.ts) on the port `variable` names. A port
 * that is taken or not allowed is a StartupError naming that variable (`PORT`,
 * `INTERNAL_PORT`), not a stack trace: the usual cause is another copy of the service, or
 * another program, on the default port.
 */
export async function listen(
  app: Express,
  config: Config,
  variable: 'PORT' | 'INTERNAL_PORT',
  logger: Logger,
): Promise<Server> {
  const port = variable === 'PORT' ? config.port : config.internalPort;
  const server = createListener(app, listenerSettings(config), logger);
  try {
    await listenOn(server, port, bindAddresses(config.host), logger);
  } catch (error) {
    throw describeListenError(error as NodeJS.ErrnoException, port, config.host, variable);
  }
  return server;
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
