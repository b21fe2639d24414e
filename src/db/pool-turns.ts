import type { Db } from './database';
import { createReadGate } from './read-gate';
import type { ReadGate } from './read-gate';
import { timedOut } from './with-timeout';

/** Runs `write` in one of a kind of writes' turns on `db`'s pool (see poolTurns). */
export type InTurn = <T>(db: Db, write: () => Promise<T>) => Promise<T>;

/**
 * Turns for one kind of short, best-effort write on the primary's pool, the one the callbacks'
 * commits take their connections from: at most `atOnce` such writes hold a connection of a pool
 * at once; later ones wait for at most `maxWaitMs` (costing a closure, not a connection), then
 * fail with ETIMEDOUT without having touched the database.
 *
 * A statement timeout (read-timeout.ts withinStatementTimeout) bounds how long one write holds
 * its connection, not how many hold one: while another session holds what they write (a
 * non-concurrent index build, a LOCK TABLE or a `SELECT … FOR UPDATE` left open), every write of
 * the kind waits for it, and a dozen at once took the whole pool — the callbacks' commits failed,
 * answered 503. With turns a held table or row costs `atOnce` connections, for the timeout.
 *
 * One gate per pool (by its Db): a second pool (another instance's, a test's) has its own.
 */
export function poolTurns({
  atOnce,
  maxWaitMs,
  what,
}: {
  atOnce: number;
  maxWaitMs: number;
  /** What the writes are, for the refusal's message: "a send intent write". */
  what: string;
}): InTurn {
  const gates = new WeakMap<Db, ReadGate>();
  return async <T>(db: Db, write: () => Promise<T>): Promise<T> => {
    let gate = gates.get(db);
    if (!gate) {
      gate = createReadGate({ concurrency: atOnce, maxWaitMs });
      gates.set(db, gate);
    }
    let started = false;
    try {
      return await gate.run(() => {
        started = true;
        return write();
      });
    } catch (error) {
      if (started) throw error;
      // The gate's own refusal speaks of the query API's reads; this one of what was not done.
      throw timedOut(
        `no turn for ${what} within ${maxWaitMs} ms: the ones before it still wait for the database`,
      );
    }
  };
}
