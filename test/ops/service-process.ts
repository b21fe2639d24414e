import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../../src/db/free-port';
import { signFormParams, signJsonBody } from '../../src/signalwire/signing';
import { cxmlFields, nativeFields } from '../helpers/callbacks';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, TEST_TOKEN_SECRET } from '../helpers/test-app';

export const REPO_ROOT = path.resolve(__dirname, '../..');

export interface ServiceProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited (never rejects). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once a log line with this `msg` has been written to stdout. */
  waitForLog(msg: string, timeoutMs?: number): Promise<void>;
  /** SIGKILL if still running: for afterAll, when a test failed half-way. */
  kill(): Promise<void>;
}

/**
 * The real service, as `node --import tsx src/main.ts` (the image runs the same entry point
 * compiled). Only the given variables and PATH are passed: nothing leaks in from the test
 * runner's environment. `entry` runs another of the service's commands (the migration CLI),
 * `cwd` another working directory (one that links to this checkout's src and node_modules),
 * `wrapper` runs it under another command (e.g. `unshare`).
 */
export function startService(
  env: Record<string, string>,
  {
    cwd = REPO_ROOT,
    entry = 'src/main.ts',
    wrapper = [],
  }: { cwd?: string; entry?: string; wrapper?: string[] } = {},
): ServiceProcess {
  const [command = process.execPath, ...args] = [
    ...wrapper,
    process.execPath,
    '--import',
    'tsx',
    entry,
  ];
  const child = spawn(command, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (const check of [...waiters]) check();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });

  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForLog(msg, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const seen = (): boolean => out.includes(`"msg":${JSON.stringify(msg)}`);
        const check = (): void => {
          if (!seen()) return;
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(
            new Error(`no "${msg}" log within ${timeoutMs} ms\nstdout:\n${out}\nstderr:\n${err}`),
          );
        }, timeoutMs);
        waiters.push(check);
        check();
      });
    },
    async kill() {
      if (hasExited) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A TCP port nothing listens on right now, never one given out before in this process. */
export { freePort };

/** Whether something accepts TCP connections on the port. */
export function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * The environment NODE_ENV=production requires, with the tests' keys and secrets, fresh ports
 * on 127.0.0.1 and no shutdown delay; `port` is the public listener's.
 */
export async function productionEnv(
  databaseUrl: string,
  spoolDir: string,
): Promise<{ port: number; env: Record<string, string> }> {
  const port = await freePort();
  return {
    port,
    env: serviceEnv(databaseUrl, {
      NODE_ENV: 'production',
      PORT: String(port),
      INTERNAL_PORT: String(await freePort()),
      API_TOKENS: 'production-test-token',
      SPOOL_DIR: spoolDir,
      SHUTDOWN_DELAY_MS: '0',
    }),
  };
}

/**
 * The service started in production mode (productionEnv) and listening, with its public
 * listener's /readyz (given up after `probeTimeoutMs`) and a signed cXML callback (`fields`
 * over cxmlFields' defaults) as the kubelet and SignalWire reach them. The caller kills it.
 */
export async function launchProductionService(
  databaseUrl: string,
  spoolDir: string,
  probeTimeoutMs: number,
): Promise<{
  service: ServiceProcess;
  readyz(): Promise<{ status: number; body: Record<string, unknown> }>;
  callback(fields?: Record<string, string>): Promise<number>;
}> {
  const { port, env } = await productionEnv(databaseUrl, spoolDir);
  const service = startService(env);
  try {
    await service.waitForLog('sw-status listening', 30_000);
  } catch (error) {
    await service.kill(); // the caller never gets it to kill
    throw error;
  }
  const base = `http://127.0.0.1:${port}`;
  const readyz = async () => {
    const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(probeTimeoutMs) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const callback = async (fields: Record<string, string> = {}) => {
    const signed = cxmlFields(fields);
    const url = `${TEST_PUBLIC_BASE_URL}/callbacks/cxml`;
    const res = await fetch(`${base}/callbacks/cxml`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-signalwire-signature': signFormParams(TEST_SIGNING_KEY, url, Object.entries(signed)),
      },
      body: new URLSearchParams(signed).toString(),
    });
    return res.status;
  };
  return { service, readyz, callback };
}

/**
 * The service's variables for a test process on `databaseUrl`: the test keys and secrets, the
 * simulator off (an upstream nothing listens on), logs at info. `overrides` adds or replaces.
 */
export function serviceEnv(
  databaseUrl: string,
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL,
    SIGNALWIRE_SPACE_URL: 'http://127.0.0.1:9',
    SIGNALWIRE_SIGNING_KEYS: TEST_SIGNING_KEY,
    CALLBACK_TOKEN_SECRET: TEST_TOKEN_SECRET,
    API_TOKENS: 'service-test-token',
    LOG_LEVEL: 'info',
    ...overrides,
  };
}

/** One signed native `delivered` callback for message `id`; rejects when no answer came. */
export function postSignedCallback(
  port: number,
  id: string,
  agent: http.Agent | false = false,
): Promise<{ status: number; connection: string | undefined }> {
  const body = JSON.stringify(nativeFields({ id, status: 'delivered' }));
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/callbacks/native',
        agent,
        headers: {
          'Content-Type': 'application/json',
          'X-SignalWire-Signature': signJsonBody(
            TEST_SIGNING_KEY,
            `${TEST_PUBLIC_BASE_URL}/callbacks/native`,
            body,
          ),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
