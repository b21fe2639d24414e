import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { AddressInfo, Socket } from 'node:net';
import { TEST_PUBLIC_BASE_URL, TEST_SIGNING_KEY, TEST_TOKEN_SECRET } from '../helpers/test-app';
import { freePort, isListening, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * SIGTERM while the process is still starting. Outside production the service migrates its
 * database before it listens; here the "database" accepts the connection and never answers,
 * so start-up is provably in progress when the signal arrives. In a container the process is
 * PID 1, where the kernel drops a signal that has no handler: that case runs the service as
 * PID 1 of a new PID namespace (`unshare`, as root) and signals it from outside, as the
 * container runtime does.
 */

jest.setTimeout(60_000);

const running: ServiceProcess[] = [];
// Each service's SPOOL_DIR, below one directory removed at the end.
const spoolRoot = mkdtempSync(`${os.tmpdir()}/sw-status-signals-`);
let stall: net.Server;
const held = new Set<Socket>();
let connected: (() => void) | undefined;

beforeAll(async () => {
  // Accepts connections and never answers: a database stuck on the network.
  stall = net.createServer((socket) => {
    held.add(socket);
    socket.on('close', () => held.delete(socket));
    connected?.();
  });
  await new Promise<void>((resolve) => stall.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  await Promise.all(running.map((service) => service.kill()));
  for (const socket of held) socket.destroy();
  await new Promise((resolve) => stall.close(resolve));
  rmSync(spoolRoot, { recursive: true, force: true });
});

async function startStalled(wrapper: string[] = []) {
  const port = await freePort();
  const reached = new Promise<void>((resolve) => (connected = resolve));
  const service = startService(
    {
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: String(port),
      INTERNAL_PORT: String(await freePort()),
      DATABASE_URL: `postgres://sw@127.0.0.1:${(stall.address() as AddressInfo).port}/sw`,
      PUBLIC_BASE_URL: TEST_PUBLIC_BASE_URL,
      SIGNALWIRE_SPACE_URL: 'http://127.0.0.1:9',
      SIGNALWIRE_SIGNING_KEYS: TEST_SIGNING_KEY,
      CALLBACK_TOKEN_SECRET: TEST_TOKEN_SECRET,
      API_TOKENS: 'signals-test-token',
      SPOOL_DIR: `${spoolRoot}/${port}`,
      LOG_LEVEL: 'info',
    },
    { wrapper },
  );
  running.push(service);
  await reached; // start-up is waiting for the database now
  return { service, port };
}

/** `unshare --pid --fork` works here (root, and namespaces allowed). */
function canUnsharePid(): boolean {
  if (os.userInfo().uid !== 0) return false;
  try {
    execFileSync('unshare', ['--pid', '--fork', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The service process inside `unshare`'s namespace (its PID as seen from here). */
function childOf(pid: number): number {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return Number(children.split(/\s+/)[0]);
}

test('When SIGTERM arrives while start-up waits for the database, then the process stops at once with exit 0 and never listens', async () => {
  const { service, port } = await startStalled();
  service.child.kill('SIGTERM');
  const { code, signal } = await service.exited;
  expect({ code, signal }).toEqual({ code: 0, signal: null });
  expect(service.stdout()).toContain('"msg":"stopped during start-up"');
  expect(await isListening(port)).toBe(false);
});

const asPid1 = canUnsharePid() ? test : test.skip;
asPid1(
  'When the service runs as PID 1 and is signalled from outside during start-up, then it stops with exit 0',
  async () => {
    const { service } = await startStalled(['unshare', '--pid', '--fork', '--kill-child']);
    const inner = childOf(service.child.pid!);
    expect(readFileSync(`/proc/${inner}/status`, 'utf8')).toMatch(/^NSpid:\s+\d+\s+1$/m);
    process.kill(inner, 'SIGTERM');
    const { code } = await service.exited;
    expect(code).toBe(0);
    expect(service.stdout()).toContain('"msg":"stopped during start-up"');
  },
);
