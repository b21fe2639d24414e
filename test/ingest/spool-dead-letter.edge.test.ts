import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { DEAD_LETTER_FILE, openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields } from '../helpers/callbacks';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { runSpoolCommand } from './support/spool-command';

/**
 * Dead letters on a disk that fills up. A dead letter is the only copy of an acknowledged
 * event once its segment is removed, so its record must be whole before the replay goes on:
 * a write that stops part-way (the file-size limit, or the last blocks of a full disk, answer
 * a write with fewer bytes than asked, and only the next write with an error) must fail the
 * dead letter, not leave a torn record that a requeue can never read.
 */

const logger = createLogger('silent');

function event(overrides: Record<string, string> = {}): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(overrides), { receivedAt: new Date(), storeBody: false });
}

let dir: string;
let database: TestDatabase;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-dead-letter-edge-'));
  database = await createTestDatabase(2);
});
afterEach(async () => {
  await database.destroy();
  await rm(dir, { recursive: true, force: true });
});

test('When the disk fills up while a replayed event is dead-lettered, then its segment stays and, once there is room, the event is dead-lettered whole and requeued into PostgreSQL', async () => {
  const neighbours = [event(), event()];
  const poisoned = event();
  const previous = await openSpool({ dir, logger });
  await previous.append([neighbours[0]!, poisoned, neighbours[1]!]);
  await previous.close();
  // Earlier dead letters (a line no codec reads, kept as it is): the disk has room for them
  // and for a few bytes more, not for a whole new record.
  const padding = `${JSON.stringify({ reason: 'unreadable spool line', line: 'x'.repeat(1 << 20) })}\n`;
  await writeFile(path.join(dir, DEAD_LETTER_FILE), padding);
  const limit = Buffer.byteLength(padding) + 64;
  // PostgreSQL refuses the poisoned event for good (until the operator fixes the cause).
  await sql
    .raw(
      `ALTER TABLE status_events ADD CONSTRAINT test_refuses CHECK (message_id <> '${poisoned.messageId}')`,
    )
    .execute(database.db);
  const env = { DATABASE_URL: database.url };

  const full = await runSpoolCommand(['replay', dir, '--timeout', '2'], env, {
    maxFileBytes: limit,
  });
  // The dead letter could not be written whole: the event is still in the spool.
  expect(full.code).toBe(1);
  expect((await readdir(dir)).filter((name) => name.startsWith('spool-'))).not.toEqual([]);
  expect((await stat(path.join(dir, DEAD_LETTER_FILE))).size).toBe(Buffer.byteLength(padding));

  // Room again: the replay dead-letters it, as a record a requeue can read.
  const roomy = await runSpoolCommand(['replay', dir], env);
  expect(roomy.code).toBe(1); // this run dead-lettered an event

  expect(roomy.stdout).toMatch(/1 dead-lettered; 0 left, 2 dead letters/);
  const records = (await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8')).trimEnd().split('\n');
  expect(records).toHaveLength(2);
  for (const record of records) expect(() => JSON.parse(record) as unknown).not.toThrow();

  // The cause fixed, the requeue stores it: every acknowledged event is in PostgreSQL once.
  await sql`ALTER TABLE status_events DROP CONSTRAINT test_refuses`.execute(database.db);
  const requeued = await runSpoolCommand(['requeue-dead-letters', dir], env);
  expect(requeued.stdout).toContain('requeued 1 dead letters (1 unreadable records stay)');
  expect(requeued.code).toBe(1); // the unreadable record is still a dead letter
  const rows = await database.db
    .selectFrom('status_events')
    .select('message_id')
    .where(
      'message_id',
      'in',
      [poisoned, ...neighbours].map((e) => e.messageId),
    )
    .execute();
  expect(rows.map((row) => row.message_id).sort()).toEqual(
    [poisoned, ...neighbours].map((e) => e.messageId).sort(),
  );
}, 90_000);

test('When a crash tore the last dead-letter record, then the next dead letter is a record of its own and is requeued', async () => {
  // The torn record of an earlier process: its event's segment was never removed.
  await writeFile(
    path.join(dir, DEAD_LETTER_FILE),
    '{"rejected_at":"2026-01-01T00:00:00.000Z","rea',
  );
  const spool = await openSpool({ dir, logger });
  const refused = event();
  await spool.deadLetter(refused, '23514 new row violates check constraint');

  // The torn record stays, unreadable, as it is.
  expect(await spool.requeueDeadLetters()).toEqual({ requeued: 1, kept: 1 });
  const replayed: string[] = [];
  await spool.replay(async (events) => {
    replayed.push(...events.map((e) => e.messageId));
  }, 10);
  expect(replayed).toEqual([refused.messageId]);
  await spool.close();
});
