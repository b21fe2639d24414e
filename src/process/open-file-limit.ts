import { readFileSync } from 'node:fs';

/**
 * The process's limit on open files (RLIMIT_NOFILE's soft limit, which Node raises to the hard
 * one as it starts), read from /proc/self/limits; undefined where there is no such file (not
 * Linux) or no finite limit.
 */
export function openFileLimit(
  read: () => string = () => readFileSync('/proc/self/limits', 'utf8'),
): number | undefined {
  let limits: string;
  try {
    limits = read();
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\d+)\s/m.exec(limits)?.[1];
  return soft === undefined ? undefined : Number(soft);
}

/** Fewest connections a listener is left with, however low the limit. */
const MIN_CONNECTIONS = 16;

/**
 * How many connections each of the two listeners may hold within `fileLimit` descriptors,
 * `requested` (HTTP_MAX_CONNECTIONS) at most. Both listeners at their bound must leave room for
 * what else the process opens: its database pools (primary and reader), the change feed's
 * connection, calls to SignalWire and relays, the spool's files — `poolMax` twice, plus 64 and
 * an eighth of the limit.
 *
 * Why: past the limit accept() fails, libuv closes every newcomer at once — SignalWire's
 * callbacks too, with nothing logged — and a new database connection fails as well. Only below
 * it does the listener's own bound apply, where a newcomer from a peer holding fewer
 * connections takes an idle one of the peer holding most (src/http/listener.ts). Kubernetes'
 * usual limit (over 500 000) is far above the default 2 × 4096; some runtimes' (systemd units,
 * ECS tasks: 1024–4096) are not.
 */
export function connectionsWithinFileLimit(
  requested: number,
  fileLimit: number | undefined,
  poolMax: number,
): number {
  if (fileLimit === undefined) return requested;
  const reserve = 2 * poolMax + 64 + Math.ceil(fileLimit / 8);
  const each = Math.floor((fileLimit - reserve) / 2);
  return Math.min(requested, Math.max(MIN_CONNECTIONS, each));
}
