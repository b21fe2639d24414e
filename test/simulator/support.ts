import type { Server } from 'node:http';
import type express from 'express';

/** An app on a real port of the loopback interface: where the simulator sends callbacks. */
export function listen(app: express.Express): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(0, '127.0.0.1', (err?: Error) =>
      err ? reject(err) : resolve(server),
    );
  });
}

/** Stops listening and ends the connections the simulator left open. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeAllConnections();
  });
}
