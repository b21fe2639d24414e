import { spawn, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { postgresBinDir } from '../../../src/db/embedded-postgres';
import { freePort } from '../../../src/db/free-port';

/**
 * A PostgreSQL server of the test's own, which it may stop and start again: the outage test
 * cannot touch the server every other test file shares. It runs the binaries that the
 * embedded-postgres package installed, directly (the package is an ES module, which jest's
 * module sandbox cannot import). As root the server must run as the `postgres` user (it
 * refuses root), which the embedded server created; its directory lives in the system temp
 * directory, which that user can reach.
 */
export interface DisposablePostgres {
  url: string;
  /** The server's data directory (a hot standby is copied from it: test/db/support). */
  dataDir: string;
  /** Fast shutdown: sessions are terminated (57P01), new connections refused. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and deletes its files. */
  destroy(): Promise<void>;
}

export interface DisposablePostgresOptions {
  /** Serve TLS with this certificate (PEM) and key; plain connections are still accepted. */
  tls?: { cert: string; key: string };
}

export async function createDisposablePostgres(
  options: DisposablePostgresOptions = {},
): Promise<DisposablePostgres> {
  const bin = postgresBinDir();
  const owner: { uid?: number; gid?: number } = os.userInfo().uid === 0 ? postgresUser() : {};
  const base = mkdtempSync(path.join(os.tmpdir(), 'sw-status-outage-'));
  chmodSync(base, 0o755);
  const dataDir = path.join(base, 'pg');
  mkdirSync(dataDir, { mode: 0o700 });
  if (owner.uid !== undefined && owner.gid !== undefined) chownSync(dataDir, owner.uid, owner.gid);

  await run(
    spawn(
      path.join(bin, 'initdb'),
      ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
      { ...owner, stdio: 'ignore' },
    ),
  );

  // PostgreSQL reads its key only when the server's user owns it with mode 0600.
  const tlsFlags: string[] = [];
  if (options.tls) {
    for (const [file, text] of [
      ['server.crt', options.tls.cert],
      ['server.key', options.tls.key],
    ] as const) {
      writeFileSync(path.join(dataDir, file), text, { mode: 0o600 });
      if (owner.uid !== undefined) chownSync(path.join(dataDir, file), owner.uid, owner.gid!);
    }
    tlsFlags.push(
      '-c',
      'ssl=on',
      '-c',
      'ssl_cert_file=server.crt',
      '-c',
      'ssl_key_file=server.key',
    );
  }

  const port = await freePort();
  let server: ChildProcess | undefined;

  const start = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = spawn(
        path.join(bin, 'postgres'),
        [
          ...['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-k', dataDir],
          ...tlsFlags,
        ],
        { ...owner, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      server = child;
      let log = '';
      const onData = (chunk: Buffer): void => {
        log += chunk.toString();
        if (log.includes('ready to accept connections')) {
          child.stderr!.off('data', onData);
          child.stderr!.resume();
          resolve();
        }
      };
      child.stderr!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`postgres exited (${code}): ${log}`)));
    });

  const stop = async (): Promise<void> => {
    const child = server;
    server = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGINT');
    await exited;
  };

  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dataDir,
    start,
    stop,
    async destroy() {
      await stop();
      rmSync(base, { recursive: true, force: true });
    },
  };
}

export function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres']).toString());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    // As embedded-postgres does when asked to create the user (createPostgresUser).
    execFileSync('groupadd', ['-f', 'postgres']);
    execFileSync('useradd', ['-g', 'postgres', 'postgres']);
    return { uid: id('-u'), gid: id('-g') };
  }
}

function run(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${child.spawnfile} exited with ${code}`)),
    );
  });
}
