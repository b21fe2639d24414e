import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import request from 'supertest';
import { createInternalApp, createPublicApp } from '../../src/app';
import type { AppDeps } from '../../src/app';
import { createListener, listenerSettings } from '../../src/http/listener';
import { createMetrics } from '../../src/metrics/metrics';
import type { TestApp } from '../helpers/test-app';

/**
 * `t`'s public app on a real listener (the budget's 503 is answered while a body is still
 * arriving) with a large-body budget of one body, held by `holder`'s stalled request with a
 * forged signature for as long as `during(port)` runs; then the internal app's /metrics, from a
 * registry of its own (every counter's value is its increase).
 */
export async function withBodyBudgetHeld(
  t: TestApp,
  holder: string,
  during: (port: number) => Promise<void>,
): Promise<string> {
  const metrics = createMetrics({ processMetrics: false });
  // A budget of one large body (the real one is 256 such bodies: 256 stalled sockets).
  const deps = { ...t.deps, metrics, bodyBytesInFlight: 64 * 1024 } as AppDeps;
  const pub = createPublicApp(deps);
  const internal = createInternalApp(deps);
  const server: Server = createListener(pub, listenerSettings(t.config));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const stalled = net.connect(port, '127.0.0.1', () =>
    stalled.write(
      `POST /callbacks/native HTTP/1.1\r\nHost: hooks.example.com\r\nX-Forwarded-For: ${holder}\r\n` +
        'Content-Type: application/json\r\nX-SignalWire-Signature: forged\r\nContent-Length: 65536\r\n\r\n{',
    ),
  );
  stalled.on('error', () => undefined);
  try {
    await new Promise((resolve) => setTimeout(resolve, 300));
    await during(port);
  } finally {
    stalled.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  return (await request(internal).get('/metrics')).text;
}
