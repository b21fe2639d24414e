import { createServer, request as httpRequest } from 'node:http';
import type { Agent, ClientRequest, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basicAuthHeader } from '../../src/signalwire/basic-auth';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from './support';
import type { Listening } from './support';

/**
 * The send proxy in front of a SignalWire that takes every request and answers none (slow to
 * answer, as in an incident): for tests of what the proxy holds meanwhile. The service serves
 * its internal app on a real socket; `stats` tells what reached SignalWire and is still waiting.
 */
export interface HeldUpstreamProxy {
  readonly t: TestApp;
  readonly stats: {
    /** Requests SignalWire has read whole. */
    received: number;
    /** Of those, the ones still waiting for their answer, and their bodies' bytes. */
    open: number;
    openBytes: number;
  };
  /** Called after each request SignalWire reads, and each answer a `send` gets. */
  onProgress(callback: () => void): void;
  /**
   * A compatibility create of `body`, chunked (no Content-Length) or with its length, and any
   * other `headers` (a Content-Encoding).
   */
  send(
    body: string | Buffer,
    agent: Agent,
    answered: Answer[],
    options?: { chunked?: boolean; headers?: Record<string, string> },
  ): ClientRequest;
  /** A compatibility create whose chunked body the test writes (and ends) itself. */
  open(agent: Agent, answered: Answer[]): ClientRequest;
  /** The callers' connections the service's socket has open, as its server counts them. */
  callers(): Promise<number>;
  close(): Promise<void>;
}

/** What the proxy answered a send itself (SignalWire answers none). */
export interface Answer {
  status: number;
  retryAfter: string | undefined;
}

export const HELD_PROJECT = 'ea108133-d6b3-407c-9536-9fad8a929a6a';
const AUTH = basicAuthHeader(HELD_PROJECT, 'PTsizingtoken');

export async function startHeldUpstreamProxy(): Promise<HeldUpstreamProxy> {
  const held: ServerResponse[] = [];
  const stats = { received: 0, open: 0, openBytes: 0 };
  let progress: () => void = () => undefined;
  const upstream: Listening = await listen((req, res) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => (size += chunk.length));
    req.on('end', () => {
      stats.received++;
      stats.open++;
      stats.openBytes += size;
      res.once('close', () => {
        stats.open--;
        stats.openBytes -= size;
      });
      held.push(res);
      progress();
    });
  });
  const t = await createTestApp({
    SIGNALWIRE_SPACE_URL: upstream.url,
    SIGNALWIRE_TIMEOUT_MS: '60000',
  });
  const proxy: Server = createServer((req, res) => t.internalApp(req, res));
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as AddressInfo;

  const request = (agent: Agent, answered: Answer[], headers: Record<string, string>) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      agent,
      method: 'POST',
      path: `/api/laml/2010-04-01/Accounts/${HELD_PROJECT}/Messages.json`,
      headers: {
        authorization: AUTH,
        'content-type': 'application/x-www-form-urlencoded',
        ...headers,
      },
    });
    req.on('response', (res) => {
      res.resume();
      answered.push({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] });
      progress();
    });
    req.on('error', () => undefined);
    return req;
  };

  return {
    t,
    stats,
    open: (agent, answered) => request(agent, answered, {}),
    callers: () =>
      new Promise<number>((resolve, reject) =>
        proxy.getConnections((error, count) => (error ? reject(error) : resolve(count))),
      ),
    onProgress(callback) {
      progress = callback;
      callback();
    },
    send(body, agent, answered, { chunked = false, headers = {} } = {}) {
      const req = request(agent, answered, {
        ...headers,
        ...(!chunked && { 'content-length': String(Buffer.byteLength(body)) }),
      });
      if (chunked) {
        // Written before the end, without a Content-Length: Node sends it chunked.
        req.write(body);
        req.end();
      } else {
        req.end(body);
      }
      return req;
    },
    async close() {
      for (const res of held) res.destroy();
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
      await t.close();
      await upstream.close();
    },
  };
}

/** A create of about 250 KiB: 8 long media URLs. */
export function largeSendBody(i: number): string {
  const pairs: Array<[string, string]> = [
    ['From', '+15551234567'],
    ['To', `+1555765${String(i).padStart(4, '0')}`],
    ['Body', 'hello'],
  ];
  for (let m = 0; m < 8; m++) {
    pairs.push(['MediaUrl', `https://media.example.com/${i}/${m}/${'m'.repeat(31_000)}`]);
  }
  return new URLSearchParams(pairs).toString();
}

/** Resolves once `done()` holds (checked at each progress), or after `ms`. */
export function until(proxy: HeldUpstreamProxy, done: () => boolean, ms = 20_000): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    proxy.onProgress(() => {
      if (done()) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}
