import { sql } from 'kysely';
import type { Db } from '../../src/db/database';

/**
 * Waits until `check` holds, polling. For conditions reached asynchronously (a replay
 * finishing, events queueing up) — not a timing assertion: the limit only turns a hang into
 * a readable failure.
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what: string,
  limitMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`still waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A promise the test releases when it chooses: holds a commit open. */
export function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

/**
 * Waits until a backend of `db`'s database sleeps in pg_sleep: a test's slowed statement (a
 * trigger that sleeps) has taken its locks and is inside. Waited for, not a fixed pause, which a
 * loaded machine could outlast before the statement got there.
 */
export async function sleepingInDatabase(db: Db, what: string): Promise<void> {
  await eventually(async () => {
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event = 'PgSleep'`.execute(db);
    return rows[0]!.n > 0;
  }, what);
}
