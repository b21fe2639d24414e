import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createListener, listenerSettings } from '../../src/http/listener';
import { createTestApp } from './test-app';
import type { TestApp } from './test-app';

/**
 * Before the file's tests, builds the service (`env` overrides the test defaults; a function
 * when they are known only once earlier hooks have run) and serves its public app — or its
 * internal one — through the service's own listener (createListener, as main.ts serves it) on
 * a real loopback port; after them, closes both.
 */
export function usePublicListener(
  env: Record<string, string> | (() => Record<string, string>),
  app: 'publicApp' | 'internalApp' = 'publicApp',
): {
  readonly t: TestApp;
  readonly port: number;
} {
  let t: TestApp;
  let server: Server;
  let port: number;
  beforeAll(async () => {
    t = await createTestApp(typeof env === 'function' ? env() : env);
    server = createListener(t[app], listenerSettings(t.config));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await t.close();
  });
  return {
    get t() {
      return t;
    },
    get port() {
      return port;
    },
  };
}
