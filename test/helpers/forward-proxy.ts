import { Agent, createServer, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A forward proxy on a real port, as a cluster's egress proxy behaves: CONNECT opens a tunnel
 * (https), an absolute-URI request is passed on (plain http). It records what it was asked to
 * pass on, so a test can tell a proxied request from a direct one.
 */

export interface ProxiedRequest {
  /** `CONNECT host:port`, or the method and absolute URI of a passed-on request. */
  line: string;
  proxyAuthorization: string | undefined;
}

export interface ForwardProxy {
  /** `http://127.0.0.1:port`. */
  url: string;
  /** The same with credentials in it, as HTTPS_PROXY may carry them. */
  urlWith(username: string, password: string): string;
  requests: ProxiedRequest[];
  /** TCP connections clients opened to the proxy (kept-alive ones count once). */
  connections(): number;
  close(): Promise<void>;
}

export async function startForwardProxy(
  options: {
    /** Answer every CONNECT and every plain request with this status itself (e.g. 407). */
    refuseWith?: number;
    /** Open each tunnel only this long after its CONNECT (a slow egress). */
    holdTunnelsMs?: number;
  } = {},
): Promise<ForwardProxy> {
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  let accepted = 0;
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  };
  // Plain http is passed on one connection per request: what the test looks at is the
  // client's side.
  const onward = new Agent({ keepAlive: false });

  const server = createServer((req, res) => {
    requests.push({
      line: `${req.method} ${req.url}`,
      proxyAuthorization: req.headers['proxy-authorization'],
    });
    if (options.refuseWith !== undefined) {
      req.resume();
      res.writeHead(options.refuseWith).end();
      return;
    }
    const target = new URL(req.url ?? '');
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const passed = httpRequest(
      {
        hostname: target.hostname,
        port: target.port,
        path: target.pathname + target.search,
        method: req.method,
        headers,
        agent: onward,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    passed.on('error', () => res.writeHead(502).end());
    req.pipe(passed);
  });
  server.on('connection', (socket: Socket) => {
    accepted += 1;
    track(socket);
  });
  server.on('connect', (req, client: Socket, head: Buffer) => {
    requests.push({
      line: `CONNECT ${req.url}`,
      proxyAuthorization: req.headers['proxy-authorization'],
    });
    if (options.refuseWith !== undefined) {
      client.end(`HTTP/1.1 ${options.refuseWith} Refused\r\ncontent-length: 0\r\n\r\n`);
      return;
    }
    const { hostname, port } = new URL(`http://${req.url}`);
    const open = (): void => {
      if (client.destroyed) return;
      const tunnel = connect(Number(port), hostname.replace(/^\[(.*)\]$/, '$1'), () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        tunnel.write(head);
        tunnel.pipe(client);
        client.pipe(tunnel);
      });
      track(tunnel);
      tunnel.on('close', () => client.destroy());
      client.on('close', () => tunnel.destroy());
    };
    const hold = setTimeout(open, options.holdTunnelsMs ?? 0);
    client.on('close', () => clearTimeout(hold));
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    urlWith: (username, password) =>
      `http://${encodeURIComponent(username)}:${encodeURIComponent(password)}@127.0.0.1:${port}`,
    requests,
    connections: () => accepted,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        for (const socket of sockets) socket.destroy();
        onward.destroy();
      }),
  };
}
