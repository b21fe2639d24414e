import { createServer, request as httpRequest } from 'node:http';
import type { ClientRequest, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import request from 'supertest';
import { ProxyBodiesFull, bodyReader, PROXY_CALL_BYTES } from '../../src/proxy/proxy-http';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from './support';
import type { Listening } from './support';

/**
 * What a replica keeps for calls to SignalWire whose callers have hung up. A caller that goes
 * once its request is in frees its connection slot at once, while the call goes on until
 * SignalWire answers or SIGNALWIRE_TIMEOUT_MS passes (a send cannot be taken back). With
 * SignalWire slow, callers hanging up and asking again piled up calls without bound — ~30 KiB
 * of heap each, 4 000 bodiless reads +100 MiB in 4 s (found by review): a pod killed for its
 * memory cuts every send and callback in flight. Now a read is dropped when its caller goes,
 * and every call counts PROXY_CALL_BYTES against the bodies' bound besides its body.
 */

const PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(PROJECT, 'PTsizingtoken');

describe('a pass-through read whose caller hangs up', () => {
  let upstream: Listening;
  let open = 0;
  let received = 0;
  let t: TestApp;
  let proxy: Server;
  let port = 0;
  beforeAll(async () => {
    // SignalWire slow: it takes every request and answers none.
    upstream = await listen((req, res) => {
      received++;
      open++;
      res.once('close', () => open--);
      req.resume();
    });
    t = await createTestApp({ SIGNALWIRE_SPACE_URL: upstream.url, SIGNALWIRE_TIMEOUT_MS: '60000' });
    proxy = createServer((req, res) => t.internalApp(req, res));
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    port = (proxy.address() as AddressInfo).port;
  });
  afterAll(async () => {
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
    await upstream.close();
    await t.close();
  });

  const ask = (method: string, path: string): ClientRequest => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method,
      path,
      headers: { authorization: AUTH },
    });
    req.on('error', () => undefined);
    req.end();
    return req;
  };
  const until = async (done: () => boolean): Promise<void> => {
    for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 20));
  };

  /** sw_status_http_server_errors_total on the internal listener: what SwStatusServerErrors reads. */
  const serverErrors = async (): Promise<number> => {
    const res = await request(t.internalApp)
      .get('/metrics')
      .auth(TEST_API_TOKEN, { type: 'bearer' });
    const line = res.text
      .split('\n')
      .find((l) => l.includes('http_server_errors_total{') && l.includes('listener="internal"'));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };

  test.each([
    [
      'a list',
      (i: number) => `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json?PageSize=${i}`,
    ],
    ['a native message', (i: number) => `/api/messaging/messages/m-${i}`],
  ])(
    'When the callers of reads of %s SignalWire is slow to answer hang up, then their calls to SignalWire end too, and no error of the service is counted',
    async (_what, path) => {
      const before = { received, errors: await serverErrors() };
      const callers = Array.from({ length: 20 }, (_, i) => ask('GET', path(i + 1)));
      await until(() => received >= before.received + 20);
      expect(open).toBe(20);
      for (const caller of callers) caller.destroy();
      await until(() => open === 0);
      expect(open).toBe(0);
      // Nobody was answered a 5xx: the callers had gone (their hang-up is not the service's).
      expect((await serverErrors()) - before.errors).toBe(0);
    },
  );
});

describe('calls counted against the bodies’ bound', () => {
  test('When bodiless calls are held while SignalWire is slow, then past the bound’s room for them the next is refused, and room comes back as they end', async () => {
    // A bound of eight calls; each handler holds its call until released.
    const bodies = bodyReader(8 * PROXY_CALL_BYTES);
    const releases: Array<() => void> = [];
    const app = express();
    app.get('/call', (req, res) =>
      bodies.holding(res, async () => {
        await bodies.read(req, res);
        await new Promise<void>((resolve) => releases.push(resolve));
        res.end('answered');
      }),
    );
    app.use((error: unknown, _req: express.Request, res: express.Response, _next: unknown) => {
      res.status(error instanceof ProxyBodiesFull ? 503 : 500).end();
    });
    const server = await listen(app);
    const status = (): Promise<number> =>
      fetch(`${server.url}/call`).then(
        (res) => res.status,
        () => -1,
      );
    try {
      const held = Array.from({ length: 8 }, status);
      for (let i = 0; i < 200 && releases.length < 8; i++)
        await new Promise((r) => setTimeout(r, 10));
      expect(releases).toHaveLength(8);
      expect(await status()).toBe(503);
      releases.shift()!();
      expect(await held[0]).toBe(200);
      // The room the answered call held is free again.
      const next = status();
      for (let i = 0; i < 200 && releases.length < 8; i++)
        await new Promise((r) => setTimeout(r, 10));
      expect(releases).toHaveLength(8);
      for (const release of releases.splice(0)) release();
      expect(await Promise.all([...held.slice(1), next])).toEqual(Array(8).fill(200));
    } finally {
      for (const release of releases.splice(0)) release();
      await server.close();
    }
  });
});
