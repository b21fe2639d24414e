import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
  appendFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { postgresBinDir } from '../../../src/db/embedded-postgres';
import { freePort } from '../../../src/db/free-port';
import { postgresUser } from '../../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../../ingest/support/disposable-postgres';

/**
 * A real hot standby of a disposable primary (test/ingest/support/disposable-postgres.ts),
 * streaming its WAL, from the same PostgreSQL binaries. The embedded-postgres package ships
 * no pg_basebackup, so the base backup is taken with PostgreSQL's low-level API, as its manual
 * describes: a physical replication slot keeps the WAL from the backup's start,
 * pg_backup_start, a copy of the data directory, pg_backup_stop (whose label file the copy
 * gets as backup_label); then standby.signal and primary_conninfo make the copy a standby.
 * The primary's defaults allow it: wal_level=replica, max_wal_senders=10, and initdb's
 * `--auth=trust` pg_hba.conf trusts local replication connections.
 */
export interface HotStandby {
  url: string;
  /** Until the standby has replayed everything the primary has written so far. */
  caughtUp(): Promise<void>;
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  destroy(): Promise<void>;
}

const SLOT = 'sw_status_test_standby';

export async function startHotStandby(primary: DisposablePostgres): Promise<HotStandby> {
  const owner: { uid?: number; gid?: number } = os.userInfo().uid === 0 ? postgresUser() : {};
  const base = mkdtempSync(path.join(os.tmpdir(), 'sw-status-standby-'));
  chmodSync(base, 0o755);
  const dataDir = path.join(base, 'pg');
  const port = await freePort();
  const primaryPort = new URL(primary.url).port;

  const admin = new Client({ connectionString: primary.url });
  await admin.connect();
  try {
    await admin.query(`SELECT pg_create_physical_replication_slot($1, true)`, [SLOT]);
    await admin.query(`SELECT pg_backup_start('sw-status test standby', true)`);
    cpSync(primary.dataDir, dataDir, {
      recursive: true,
      // The running server's own files, and WAL the standby streams through the slot instead.
      filter: (source) => {
        const relative = path.relative(primary.dataDir, source);
        return (
          !['postmaster.pid', 'postmaster.opts'].includes(relative) &&
          !path.basename(source).startsWith('.s.PGSQL') &&
          !relative.startsWith(`pg_wal${path.sep}`) &&
          !relative.startsWith(`pg_replslot${path.sep}`)
        );
      },
    });
    const { rows } = await admin.query<{ labelfile: string }>(
      `SELECT labelfile FROM pg_backup_stop(true)`,
    );
    writeFileSync(path.join(dataDir, 'backup_label'), rows[0]!.labelfile);
  } finally {
    await admin.end();
  }
  writeFileSync(path.join(dataDir, 'standby.signal'), '');
  appendFileSync(
    path.join(dataDir, 'postgresql.auto.conf'),
    `primary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres'\n` +
      `primary_slot_name = '${SLOT}'\nhot_standby = on\n`,
  );
  chmodSync(dataDir, 0o700);
  if (owner.uid !== undefined) chownRecursive(dataDir, owner.uid, owner.gid!);

  const server = await startServer(dataDir, port, owner);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const onStandby = async (statement: string) => {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      return await client.query(statement);
    } finally {
      await client.end();
    }
  };

  return {
    url,
    async caughtUp() {
      const client = new Client({ connectionString: primary.url });
      await client.connect();
      try {
        const { rows } = await client.query<{ lsn: string }>(`SELECT pg_current_wal_lsn() AS lsn`);
        for (;;) {
          const replayed = await onStandby(
            `SELECT pg_last_wal_replay_lsn() >= '${rows[0]!.lsn}'::pg_lsn AS done`,
          );
          if ((replayed.rows[0] as { done: boolean }).done) return;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      } finally {
        await client.end();
      }
    },
    pauseReplay: async () => void (await onStandby('SELECT pg_wal_replay_pause()')),
    resumeReplay: async () => void (await onStandby('SELECT pg_wal_replay_resume()')),
    async destroy() {
      if (server.exitCode === null) {
        const exited = new Promise((resolve) => server.once('exit', resolve));
        server.kill('SIGINT');
        await exited;
      }
      rmSync(base, { recursive: true, force: true });
      const client = new Client({ connectionString: primary.url });
      await client.connect();
      await client.query(`SELECT pg_drop_replication_slot($1)`, [SLOT]).catch(() => undefined);
      await client.end();
    },
  };
}

function startServer(
  dataDir: string,
  port: number,
  owner: { uid?: number; gid?: number },
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      path.join(postgresBinDir(), 'postgres'),
      ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-k', dataDir],
      { ...owner, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    const onData = (chunk: Buffer): void => {
      log += chunk.toString();
      if (log.includes('ready to accept read-only connections')) {
        child.stderr!.off('data', onData);
        child.stderr!.resume();
        resolve(child);
      }
    };
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`standby exited (${code}): ${log}`)));
  });
}

function chownRecursive(dir: string, uid: number, gid: number): void {
  chownSync(dir, uid, gid);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) chownRecursive(full, uid, gid);
    else chownSync(full, uid, gid);
  }
}
