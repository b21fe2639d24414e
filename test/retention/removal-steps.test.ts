import { sql } from 'kysely';
import { recordEvents } from '../../src/messages/record-events';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * What a retention step records for the change feed's cursor check (db/migrations/0013): the
 * next step number with the newest event it removed, dropping the rows at or below it (a
 * monotonic stack), and the expiry mark as before, which pods of the previous version read.
 */

const DAY = 86_400_000;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.destroy();
});

const at = (days: number) => new Date(Date.now() - days * DAY);

/** Records one event for `messageId`, received `days` ago; its feed position as text. */
async function event(messageId: string, days: number): Promise<string> {
  await recordEvents(database.db, [statusEvent('failed', { messageId, receivedAt: at(days) })]);
  const { rows } = await sql<{ position: string }>`
    SELECT tx || '/' || seq AS position FROM status_events
    WHERE message_id = ${messageId}`.execute(database.db);
  return rows[0]!.position;
}

async function steps(): Promise<string[]> {
  const { rows } = await sql<{ row: string }>`
    SELECT step || ':' || removed_tx || '/' || removed_seq AS row
    FROM sw_status_feed_removals ORDER BY step`.execute(database.db);
  return rows.map((row) => row.row);
}

async function mark(): Promise<string> {
  const { rows } = await sql<{ mark: string }>`
    SELECT removed_tx || '/' || removed_seq AS mark FROM sw_status_retention`.execute(database.db);
  return rows[0]!.mark;
}

test('When retention steps remove events above and below earlier ones, then each records its newest removed event under the next number, drops the rows it covers, and the expiry mark stays the highest', async () => {
  // In feed order: a, b, c, then d replayed late (removed first), then e.
  const a = await event('a', 30);
  const b = await event('b', 29);
  const c = await event('c', 28);
  const d = await event('d', 40);
  const e = await event('e', 27);
  const remove = async (days: number) =>
    (await removeExpiredMessages(database.db, at(days), 1)).status_events;

  expect(await remove(35)).toBe(1); // d
  expect([await steps(), await mark()]).toEqual([[`1:${d}`], d]);
  expect(await remove(29.5)).toBe(1); // a: below d, kept beside it
  expect([await steps(), await mark()]).toEqual([[`1:${d}`, `2:${a}`], d]);
  expect(await remove(28.5)).toBe(1); // b: covers a
  expect([await steps(), await mark()]).toEqual([[`1:${d}`, `3:${b}`], d]);
  // A step that removes nothing records nothing.
  expect(await remove(28.5)).toBe(0);
  expect(await steps()).toEqual([`1:${d}`, `3:${b}`]);
  expect(await remove(27.5)).toBe(1); // c: covers b
  expect(await steps()).toEqual([`1:${d}`, `4:${c}`]);
  expect(await remove(26.5)).toBe(1); // e: beyond d, covers every row
  expect([await steps(), await mark()]).toEqual([[`5:${e}`], e]);
});
