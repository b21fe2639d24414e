import { sql } from 'kysely';
import type { Db } from '../../src/db/database';

/**
 * When the change feed could first read a message's event: once the snapshot's xmin (the
 * horizon — the whole cluster's, so another test file's open transaction on a shared PostgreSQL
 * holds it) is past the event's transaction. Looked at every 20 ms until then, or until
 * `answered` settles (the answer then came first: its own time is the bound). A long-poll's
 * promptness is measured from here, not from the commit.
 */
export async function readableAt(
  db: Db,
  messageId: string,
  answered: Promise<unknown>,
): Promise<number> {
  let done = false;
  void answered.then(
    () => (done = true),
    () => (done = true),
  );
  for (;;) {
    const { rows } = await sql<{ readable: boolean }>`
      SELECT pg_snapshot_xmin(pg_current_snapshot()) > tx AS readable
      FROM status_events WHERE message_id = ${messageId}`.execute(db);
    if (rows[0]?.readable || done) return Date.now();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
