import { appendFile, mkdtemp, rm } from 'node:fs/promises';
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
 * README ("Spool commands"): `replay` exits 0 once the directory is empty — into the database,
 * not into the dead-letter file. An operator's script or Job reads the exit code alone: a run
 * that dead-lettered events (or a requeue whose events were dead-lettered again, or that left
 * unreadable records behind) must not pass as done.
 */

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

let dir: string;
let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(async () => {
  await database.destroy();
});
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-dead-letters-'));
});
afterEach(async () => {
  await sql`ALTER TABLE status_events DROP CONSTRAINT IF EXISTS test_refuses`.execute(database.db);
  await rm(dir, { recursive: true, force: true });
});

function event(): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
}

async function spoolEvents(events: StatusEvent[], deadLetters: StatusEvent[] = []): Promise<void> {
  const spool = await openSpool({ dir, logger });
  await spool.append(events);
  for (const letter of deadLetters) await spool.deadLetter(letter, '23514 check violation');
  await spool.close();
}

/** PostgreSQL refuses `event` for good, until the operator fixes the cause. */
async function refuseForGood(event: StatusEvent): Promise<void> {
  await sql
    .raw(
      `ALTER TABLE status_events ADD CONSTRAINT test_refuses CHECK (message_id <> '${event.messageId}')`,
    )
    .execute(database.db);
}

async function stored(events: StatusEvent[]): Promise<number> {
  const rows = await database.db
    .selectFrom('status_events')
    .select('message_id')
    .where(
      'message_id',
      'in',
      events.map((e) => e.messageId),
    )
    .execute();
  return rows.length;
}

const env = () => ({ DATABASE_URL: database.url });

test('When replay dead-letters an event the database refuses, then it says so and exits 1, the others stored', async () => {
  const poisoned = event();
  const others = [event(), event()];
  await spoolEvents([others[0]!, poisoned, others[1]!]);
  await refuseForGood(poisoned);

  const replay = await runSpoolCommand(['replay', dir], env());

  expect(replay.stderr).toBe('');
  expect(replay.stdout).toMatch(/1 dead-lettered; 0 left, 1 dead letters in /);
  expect(replay.stdout).toContain(
    '1 events were dead-lettered by this run and are not in the database: fix their cause',
  );
  expect(replay.code).toBe(1);
  expect(await stored(others)).toBe(2);
}, 60_000);

test('When replay finds dead letters from an earlier run but dead-letters none itself, then it exits 0 once empty', async () => {
  await spoolEvents([event()], [event()]);

  const replay = await runSpoolCommand(['replay', dir], env());

  expect(replay.stderr).toBe('');
  expect(replay.stdout).toMatch(/0 dead-lettered; 0 left, 1 dead letters in /);
  expect(replay.stdout).not.toContain('dead-lettered by this run');
  expect(replay.code).toBe(0);
}, 60_000);

test('When requeue-dead-letters runs before their cause is fixed, then they are dead-lettered again and it exits 1', async () => {
  const poisoned = event();
  await spoolEvents([], [poisoned]);
  await refuseForGood(poisoned);

  const requeue = await runSpoolCommand(['requeue-dead-letters', dir], env());

  expect(requeue.stderr).toBe('');
  expect(requeue.stdout).toContain('requeued 1 dead letters');
  expect(requeue.stdout).toMatch(/1 dead-lettered; 0 left, 1 dead letters in /);
  expect(requeue.stdout).toContain('dead-lettered by this run');
  expect(requeue.code).toBe(1);
}, 60_000);

test('When requeue-dead-letters runs once their cause is fixed, then it stores them and exits 0', async () => {
  const letters = [event(), event()];
  await spoolEvents([], letters);

  const requeue = await runSpoolCommand(['requeue-dead-letters', dir], env());

  expect(requeue.stderr).toBe('');
  expect(requeue.stdout).toMatch(/0 dead-lettered; 0 left, 0 dead letters in /);
  expect(requeue.code).toBe(0);
  expect(await stored(letters)).toBe(2);
}, 60_000);

test('When requeue-dead-letters leaves unreadable records in the dead-letter file, then it says they remain and exits 1', async () => {
  const letter = event();
  await spoolEvents([], [letter]);
  await appendFile(path.join(dir, DEAD_LETTER_FILE), 'not a dead-letter record\n');

  const requeue = await runSpoolCommand(['requeue-dead-letters', dir], env());

  expect(requeue.stderr).toBe('');
  expect(requeue.stdout).toContain('requeued 1 dead letters (1 unreadable records stay)');
  expect(requeue.stdout).toContain(`1 dead letters remain in ${dir}`);
  expect(requeue.code).toBe(1);
  expect(await stored([letter])).toBe(1);
}, 60_000);

test('When requeue-dead-letters asks a running holder that keeps unreadable records, then it exits 1', async () => {
  await spoolEvents([], [event()]);
  await appendFile(path.join(dir, DEAD_LETTER_FILE), 'not a dead-letter record\n');
  // The service's answer to the request (group-commit-recorder), without its replay.
  const held = await openSpool({ dir, logger, command: 'npm start' });
  held.lock.handle('requeue-dead-letters', () => held.requeueDeadLetters());
  try {
    const requeue = await runSpoolCommand(['requeue-dead-letters', dir], env());

    expect(requeue.stderr).toBe('');
    expect(requeue.stdout).toMatch(
      /^requeued 1 dead letters into the spool of sw-status pid \d+ .*; 1 unreadable records stay in the dead-letter file\n$/,
    );
    expect(requeue.code).toBe(1);
  } finally {
    await held.close();
  }
}, 60_000);
