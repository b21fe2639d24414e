import { readFileSync, readdirSync } from 'node:fs';
import { withClient } from './database';

const CLOCK_TICKS = 100; // USER_HZ on Linux

/**
 * CPU time the whole PostgreSQL server has used, read from /proc (so only for a server on this
 * machine): the postmaster's own time, the time of its children that have exited (cutime,
 * cstime: a closed connection's backend), and that of the children still running (backends,
 * WAL writer, checkpointer, autovacuum). A difference of two readings is what the server spent
 * in between, whoever asked for it — the honest cost per event of a write path.
 */
export async function postmasterPid(adminUrl: string): Promise<number> {
  return withClient(adminUrl, async (client) => {
    const { rows } = await client.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`,
    );
    const checkpointer = rows[0]?.pid;
    if (checkpointer === undefined) throw new Error('no checkpointer process found');
    return statFields(checkpointer).ppid;
  });
}

/** The server's CPU seconds so far (see above). */
export function postgresCpuSeconds(postmaster: number): number {
  const own = statFields(postmaster);
  let ticks = own.utime + own.stime + own.cutime + own.cstime;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const child = statFields(Number(entry));
      if (child.ppid === postmaster) ticks += child.utime + child.stime;
    } catch {
      // exited while we looked: its time is in the postmaster's cutime by now
    }
  }
  return ticks / CLOCK_TICKS;
}

function statFields(pid: number) {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = text.slice(text.lastIndexOf(') ') + 2).split(' ');
  // Fields after the name start at state (3): ppid is 4, utime 14, stime 15, cutime 16, cstime 17.
  const at = (field: number) => Number(fields[field - 3]);
  return { ppid: at(4), utime: at(14), stime: at(15), cutime: at(16), cstime: at(17) };
}
