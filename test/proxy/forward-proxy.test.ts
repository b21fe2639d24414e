import { request as httpRequest } from 'node:http';
import type { Express } from 'express';
import request from 'supertest';
import { createInternalApp } from '../../src/app';
import { createLogger } from '../../src/logger';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { startSimulator } from '../../src/simulator/simulator';
import type { RunningSimulator } from '../../src/simulator/simulator';
import { startForwardProxy } from '../helpers/forward-proxy';
import type { ForwardProxy } from '../helpers/forward-proxy';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { startTlsUpstream } from '../helpers/tls-upstream';
import { eventually } from '../helpers/eventually';
import type { TlsUpstream } from '../helpers/tls-upstream';
import { closedPort, listen } from './support';

/**
 * Clusters whose egress must pass a forward proxy set HTTPS_PROXY / HTTP_PROXY / NO_PROXY:
 * the send proxy's calls to SignalWire take that proxy, on real sockets end to end — a CONNECT
 * tunnel to an https space, an absolute-URI request to an http one — and go direct when
 * NO_PROXY names SignalWire's host.
 */

const PROJECT = 'd1c2b3a4-5e6f-4a7b-8c9d-0e1f2a3b4c5d';
const TOKEN = 'PTforwardproxytesttoken';
const AUTH = basicAuthHeader(PROJECT, TOKEN);
const COMPAT_PATH = `/api/laml/2010-04-01/Accounts/${PROJECT}/Messages.json`;
const PROXY_USER = 'egress-user';
const PROXY_PASSWORD = 'egress-pa55word-not-for-logs';
/** How long the slow proxy holds a CONNECT before opening the tunnel. */
const HOLD_MS = 1_000;
const PROXY_AUTH = `Basic ${Buffer.from(`${PROXY_USER}:${PROXY_PASSWORD}`).toString('base64')}`;

function send(app: Express) {
  return request(app)
    .post(COMPAT_PATH)
    .set('Authorization', AUTH)
    .set('Content-Type', 'application/x-www-form-urlencoded')
    .send(new URLSearchParams({ To: '+15557650000', From: '+15551234567', Body: 'x' }).toString());
}

describe('SignalWire on http:// (HTTP_PROXY)', () => {
  let sim: RunningSimulator;
  let egress: ForwardProxy;
  const apps: TestApp[] = [];

  beforeAll(async () => {
    sim = await startSimulator({
      stepDelayMs: 3_600_000,
      credentials: { projectId: PROJECT, token: TOKEN },
    });
    egress = await startForwardProxy();
  });

  afterEach(() => {
    egress.requests.length = 0;
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    await egress.close();
    await sim.close();
  });

  async function appWith(env: Record<string, string>): Promise<TestApp> {
    const app = await createTestApp({ SIGNALWIRE_SPACE_URL: sim.url, ...env });
    apps.push(app);
    return app;
  }

  test('When HTTP_PROXY is set, then sends reach SignalWire through it as absolute-URI requests with its credentials, on one kept-alive connection', async () => {
    const t = await appWith({ HTTP_PROXY: egress.urlWith(PROXY_USER, PROXY_PASSWORD) });
    const before = egress.connections();

    const first = await send(t.internalApp);
    const second = await send(t.internalApp);

    expect([first.status, second.status]).toEqual([201, 201]);
    const sids = [first.body.sid, second.body.sid] as string[];
    expect(sids.every((sid) => sim.messages.some((m) => m.id === sid))).toBe(true);
    expect(egress.requests).toEqual([
      { line: `POST ${sim.url}${COMPAT_PATH}`, proxyAuthorization: PROXY_AUTH },
      { line: `POST ${sim.url}${COMPAT_PATH}`, proxyAuthorization: PROXY_AUTH },
    ]);
    expect(egress.connections() - before).toBe(1);
  });

  test('When only the lower-case http_proxy is set, then it is honoured too', async () => {
    const t = await appWith({ http_proxy: egress.url });
    expect((await send(t.internalApp)).status).toBe(201);
    expect(egress.requests.map((r) => r.line)).toEqual([`POST ${sim.url}${COMPAT_PATH}`]);
  });

  test.each([
    ['its address', () => 'internal.example, 127.0.0.1'],
    ['its address and port', () => `internal.example, ${new URL(sim.url).host}`],
    ['* (the whole value)', () => '*'],
  ])('When NO_PROXY names SignalWire by %s, then sends go direct', async (_, noProxy) => {
    const t = await appWith({ HTTP_PROXY: egress.url, NO_PROXY: noProxy() });
    const res = await send(t.internalApp);
    expect(res.status).toBe(201);
    expect(sim.messages.some((m) => m.id === res.body.sid)).toBe(true);
    expect(egress.requests).toEqual([]);
  });

  test('When the forward proxy cannot be reached, then the send fails as unreachable (502) and SignalWire never sees it', async () => {
    const t = await appWith({ HTTP_PROXY: `http://127.0.0.1:${await closedPort()}` });
    const before = sim.messages.length;
    const res = await send(t.internalApp);
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ code: 20503, status: 502 });
    expect(sim.messages.length).toBe(before);
  });

  test('When the forward proxy answers an http:// send with its own 407, then the send fails as unreachable (502), not as SignalWire’s answer', async () => {
    const refusing = await startForwardProxy({ refuseWith: 407 });
    try {
      const t = await appWith({ HTTP_PROXY: refusing.url });
      const before = sim.messages.length;
      const res = await send(t.internalApp);
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({ code: 20503, status: 502 });
      expect(refusing.requests.map((r) => r.line)).toEqual([`POST ${sim.url}${COMPAT_PATH}`]);
      expect(sim.messages.length).toBe(before);
    } finally {
      await refusing.close();
    }
  });

  test('When only HTTPS_PROXY is set, then an http:// space is reached directly, as curl does', async () => {
    const t = await appWith({ HTTPS_PROXY: egress.url });
    expect((await send(t.internalApp)).status).toBe(201);
    expect(egress.requests).toEqual([]);
  });
});

describe('SignalWire on https:// (HTTPS_PROXY)', () => {
  let signalwire: TlsUpstream;
  let egress: ForwardProxy;
  let refusing: ForwardProxy;
  let slow: ForwardProxy;
  const apps: TestApp[] = [];

  beforeAll(async () => {
    signalwire = await startTlsUpstream((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ sid: crypto.randomUUID(), status: 'queued' }));
      });
    });
    egress = await startForwardProxy();
    refusing = await startForwardProxy({ refuseWith: 407 });
    slow = await startForwardProxy({ holdTunnelsMs: HOLD_MS });
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    await egress.close();
    await refusing.close();
    await slow.close();
    await signalwire.close();
    jest.restoreAllMocks();
  });

  async function appWith(env: Record<string, string>): Promise<TestApp> {
    const app = await createTestApp({ SIGNALWIRE_SPACE_URL: signalwire.url, ...env });
    apps.push(app);
    return app;
  }

  test('When HTTPS_PROXY is set, then sends reach SignalWire through one CONNECT tunnel, kept alive between them', async () => {
    // HTTP_PROXY names a proxy that would refuse: an https space must not take it.
    const t = await appWith({
      HTTPS_PROXY: egress.urlWith(PROXY_USER, PROXY_PASSWORD),
      HTTP_PROXY: refusing.url,
    });
    const before = signalwire.requests.length;

    const first = await send(t.internalApp);
    const second = await send(t.internalApp);

    expect([first.status, second.status]).toEqual([201, 201]);
    expect(signalwire.requests.slice(before)).toEqual([
      `POST ${COMPAT_PATH}`,
      `POST ${COMPAT_PATH}`,
    ]);
    expect(egress.requests).toEqual([
      { line: `CONNECT localhost:${signalwire.port}`, proxyAuthorization: PROXY_AUTH },
    ]);
    expect(refusing.requests).toEqual([]);
  });

  test('When NO_PROXY names the space’s domain, then the https space is reached directly', async () => {
    const t = await appWith({ HTTPS_PROXY: refusing.url, NO_PROXY: '.localhost' });
    const before = signalwire.requests.length;
    expect((await send(t.internalApp)).status).toBe(201);
    expect(signalwire.requests.length).toBe(before + 1);
    expect(refusing.requests).toEqual([]);
  });

  test('When the forward proxy refuses the tunnel, then the send fails as unreachable (502, safe to retry), SignalWire never sees it, and the logs never carry the proxy’s password', async () => {
    const t = await appWith({ HTTPS_PROXY: refusing.urlWith(PROXY_USER, PROXY_PASSWORD) });
    const lines: string[] = [];
    const logger = createLogger('trace', { write: (line: string) => void lines.push(line) });
    const before = signalwire.requests.length;

    const res = await send(createInternalApp({ ...t.deps, logger }));

    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ code: 20503, status: 502 });
    expect(signalwire.requests.length).toBe(before);
    expect(refusing.requests.at(-1)?.line).toBe(`CONNECT localhost:${signalwire.port}`);
    const log = lines.join('');
    expect(log).toMatch(/refused the tunnel with 407/);
    expect(log).not.toContain(PROXY_PASSWORD);
    expect(log).not.toContain(PROXY_AUTH.slice('Basic '.length));
  });

  test('When the caller goes away while the tunnel is still being opened, then the send is dropped unsent', async () => {
    const t = await appWith({ HTTPS_PROXY: slow.url });
    const service = await listen(t.internalApp);
    const before = signalwire.requests.length;
    try {
      const req = httpRequest({
        host: '127.0.0.1',
        port: service.port,
        method: 'POST',
        path: COMPAT_PATH,
        headers: { authorization: AUTH, 'content-type': 'application/x-www-form-urlencoded' },
      });
      req.on('error', () => undefined);
      req.end(
        new URLSearchParams({ To: '+15557650000', From: '+15551234567', Body: 'x' }).toString(),
      );
      await eventually(() => slow.requests.length === 1, 'the CONNECT');
      // The client's own timeout fires: it closes the connection and will retry the send.
      req.destroy();
      // Past the hold and a handshake: by then a forwarded send would have arrived.
      await new Promise((resolve) => setTimeout(resolve, HOLD_MS + 1_000));
      expect(signalwire.requests.length).toBe(before);
    } finally {
      await service.close();
    }
  });
});
