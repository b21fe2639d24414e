import { chmodSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { ROOT_DATA_BASE } from '../../../src/db/embedded-postgres';
import { REPO_ROOT, freePort, startService } from '../../ops/service-process';
import type { ServiceProcess } from '../../ops/service-process';

/**
 * `npm start` as a new user runs it: in a checkout of its own (a scratch directory linking to
 * this one's code), with the development defaults (no keys, no tokens, no DATABASE_URL).
 * `scratch` and `running` are the calling test file's, for its afterAll to remove and kill.
 */
export function firstRun(scratch: string[], running: ServiceProcess[]) {
  /** A checkout at `dir` (created here) linking to this one's code, like a fresh clone. */
  function checkoutAt(dir: string): string {
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    for (const name of ['src', 'db', 'node_modules', 'package.json', 'tsconfig.json']) {
      symlinkSync(path.join(REPO_ROOT, name), path.join(dir, name));
    }
    return dir;
  }

  /** A checkout the postgres user can enter, with its .data (as the process tests make it). */
  function checkout(): string {
    const parent = mkdtempSync('/var/tmp/sw-status-firstrun-');
    scratch.push(parent);
    chmodSync(parent, 0o755);
    const dir = checkoutAt(path.join(parent, 'sw-status'));
    mkdirSync(path.join(dir, '.data'), { mode: 0o755 });
    chmodSync(path.join(dir, '.data'), 0o755);
    return dir;
  }

  /**
   * A home directory only its owner may enter, as ~ is on most distributions. As root, the
   * data of a checkout in it lives below ROOT_DATA_BASE: removeLinkedData takes it.
   */
  function privateHome(): string {
    const home = mkdtempSync('/var/tmp/sw-status-firstrun-home-');
    scratch.push(home);
    chmodSync(home, 0o700);
    return home;
  }

  /** `npm start` with nothing configured but free ports: the README's Quick start. */
  async function npmStart(
    cwd: string,
    wrapper: string[] = ['setsid'],
  ): Promise<{ service: ServiceProcess; port: number; internal: number }> {
    const port = await freePort();
    const internal = await freePort();
    const service = startService(
      {
        PORT: String(port),
        INTERNAL_PORT: String(internal),
        HOST: '127.0.0.1',
        SHUTDOWN_DRAIN_MS: '2000',
        SHUTDOWN_GRACE_MS: '20000',
      },
      { cwd, wrapper },
    );
    running.push(service);
    return { service, port, internal };
  }

  return { checkoutAt, checkout, privateHome, npmStart };
}

/**
 * Until the service says it listens; its exit first fails the test with its output. Polled, so
 * that a start that exits leaves no timer behind to keep jest running.
 */
export async function listening(service: ServiceProcess, timeoutMs = 60_000): Promise<void> {
  let gone = false;
  void service.exited.then(() => {
    gone = true;
  });
  for (const deadline = Date.now() + timeoutMs; !saidListening(service);) {
    if (gone || Date.now() > deadline) {
      throw new Error(
        `${gone ? 'the start exited' : `no "sw-status listening" within ${timeoutMs} ms`}\n` +
          `stdout:\n${service.stdout()}\nstderr:\n${service.stderr()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function saidListening(service: ServiceProcess): boolean {
  return service.stdout().includes('"msg":"sw-status listening"');
}

/** Ctrl-C, as a person stops it: the service must exit 0. */
export async function stop(service: ServiceProcess): Promise<void> {
  process.kill(service.child.pid!, 'SIGTERM');
  expect((await service.exited).code).toBe(0);
}

/** Where the start log says the embedded PostgreSQL's data is. */
export function startedDataDir(service: ServiceProcess): string {
  const line = service
    .stdout()
    .split('\n')
    .find((l) => l.includes('"msg":"embedded PostgreSQL started"'));
  return (JSON.parse(line!) as { dataDir: string }).dataDir;
}

/**
 * The folder below ROOT_DATA_BASE that `checkout`'s `.data/postgres` links to, removed: a
 * start that failed before it logged where its data was leaves it too.
 */
export function removeLinkedData(checkout: string): void {
  let target: string;
  try {
    target = readlinkSync(path.join(checkout, '.data', 'postgres'));
  } catch {
    return; // no link: the data, if any, is in the checkout
  }
  if (target.startsWith(`${ROOT_DATA_BASE}/`)) {
    rmSync(path.dirname(target), { recursive: true, force: true });
  }
}
