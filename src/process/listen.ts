import { ServerResponse } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import type { Express } from 'express';
import type { Config } from '../config';
import { bindAddresses, createListener, listenOn, listenerSettings } from '../http/listener';
import type { Logger } from '../logger';
import { connectionsWithinFileLimit, openFileLimit } from './open-file-limit';
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
  const settings = listenerSettings(config);
  const fileLimit = openFileLimit();
  const maxConnections = connectionsWithinFileLimit(
    settings.maxConnections,
    fileLimit,
    config.databasePoolMax,
  );
  if (maxConnections < settings.maxConnections) {
    logger.warn(
      {
        listener: variable,
        fileLimit,
        maxConnections,
        HTTP_MAX_CONNECTIONS: config.httpMaxConnections,
      },
      `open files are limited to ${fileLimit}: this listener holds at most ${maxConnections} connections, not HTTP_MAX_CONNECTIONS (${config.httpMaxConnections}); raise the limit (the runtime's nofile, ulimit -n) to use it`,
    );
  }
  const server = createListener(app, { ...settings, maxConnections }, logger);
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
  if (error.code === 'EAI_AGAIN') {
    // Not an address, so looked up as a name, and the lookup failed for now: HOST may be right.
    return new StartupError(
      `HOST=${host}: looking up the name failed for now (EAI_AGAIN: DNS not answering). Check DNS, or set HOST to an address (0.0.0.0 / :: for all).`,
      { cause: error },
    );
  }
  if (error.code === 'ENOTFOUND') {
    // Not an address, so looked up as a name, and the name leads nowhere.
    return new StartupError(
      `HOST=${host}: no address to listen on (not an address, and no name that resolves here). Set HOST to one of this machine's addresses, or 0.0.0.0 / :: for all.`,
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
 * `drainMs` (a client trickling a body must not hold the pod past its grace period).
 *
 * A busy keep-alive connection (the Ingress controller's, an app's HTTP agent) is not left
 * open: from now on every answer — in flight or still to come on it — says Connection: close,
 * and the connection ends once its answer is sent. Otherwise the client would go on sending
 * requests on it until the deadline cut it, perhaps mid-request (a send the proxy had already
 * forwarded to SignalWire), and every drain would last `drainMs` in full.
 *
 * `hold`: work whose answers must go out before the cut (the send proxy's sends, which SignalWire
 * may already have acted on). Past `drainMs` the cut waits for it to settle, until `until`
 * (performance.now()) at the latest.
 */
export function closeServer(
  server: Server,
  drainMs: number,
  hold?: { settled(): Promise<void>; until: number },
): Promise<boolean> {
  return new Promise((resolve) => {
    const onRequest = (_req: IncomingMessage, res: ServerResponse): void => closeAfter(res);
    let holding: NodeJS.Timeout | undefined;
    let closed = false;
    const cut = (): void => {
      clearTimeout(holding);
      if (closed) return;
      server.closeAllConnections();
      resolve(false);
    };
    const deadline = setTimeout(
      () => {
        const left = hold ? hold.until - performance.now() : 0;
        if (!hold || left <= 0) return cut();
        holding = setTimeout(cut, left);
        hold.settled().then(cut, cut);
      },
      Math.max(0, drainMs),
    );
    // Before the app's own listener, so that the header is set before any answer begins.
    server.prependListener('request', onRequest);
    server.close(() => {
      closed = true;
      clearTimeout(deadline);
      clearTimeout(holding);
      server.off('request', onRequest);
      resolve(true);
    });
    for (const res of unfinishedResponses(server)) closeAfter(res);
    server.closeIdleConnections();
  });
}

/** Ends the response's connection once it is answered, and says so in the answer if it can. */
function closeAfter(res: ServerResponse): void {
  if (!res.headersSent) {
    // Node then ends the connection itself once the response is sent.
    res.setHeader('Connection', 'close');
    return;
  }
  // Headers already sent, saying keep-alive: end the connection after the last byte.
  const socket = res.socket;
  if (!socket || res.writableFinished) return;
  res.once('finish', () => socket.end(() => socket.destroy()));
}

/**
 * The responses a server has begun and not finished. Node keeps its connections in a list of
 * its own (for closeIdleConnections and the request timeouts) but does not expose it: it is
 * found by its symbol's description, and the response in flight on each connection's socket is
 * Node's `_httpMessage` (as in src/http/listener.ts). Checked on Node 20 and 24
 * (test/ops/drain-keep-alive.test.ts); should a Node release hide the list, nothing is found
 * and in-flight keep-alive answers go out as before (cut at the deadline at worst).
 */
function unfinishedResponses(server: Server): ServerResponse[] {
  const key = Object.getOwnPropertySymbols(server).find(
    (symbol) => symbol.description === 'http.server.connections',
  );
  const connections = key && (server as unknown as Record<symbol, unknown>)[key];
  const all = (connections as { all?: () => unknown } | undefined)?.all;
  if (typeof all !== 'function') return [];
  const found = all.call(connections);
  if (!Array.isArray(found)) return [];
  return found
    .map((connection) => {
      const socket = (connection as { socket?: { _httpMessage?: unknown } } | null)?.socket;
      return socket?._httpMessage;
    })
    .filter(
      (message): message is ServerResponse =>
        message instanceof ServerResponse && !message.writableFinished,
    );
}

export function address(server: Server): string {
  const info = server.address();
  return typeof info === 'object' && info ? `${info.address}:${info.port}` : String(info);
}
