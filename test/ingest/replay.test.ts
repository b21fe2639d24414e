import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';

import request from 'supertest';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import type { Spool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import { createMetrics } from '../../src/metrics/metrics';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';
import { holdRowLock } from '../helpers/lock-waits';
import { runSpoolCommand } from './support/spool-command';

/**
 * Replaying a spool into a real PostgreSQL that fails the way production databases do: a row
 * lock held by another session past `lock_timeout`, a statement cut by `statement_timeout`,
 * a value a constraint refuses. Every spooled event was acknowledged to SignalWire, which
 * will never send it again: transient failures are retried until they pass, and only an
 * event that can never be stored becomes a dead letter — visible, and requeued by command.
 */

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

interface Harness {
  t: TestApp;
  spool: Spool;
  recorder: GroupCommitRecorder;
  /** The recorder's pool, with the session settings under test. */
  replayDb: DatabaseHandle;
  close(): Promise<void>;
}

/** The app and a recorder whose connections run with `settings` (e.g. lock_timeout=100). */
async function harness(dir: string, settings: string): Promise<Harness> {
  const h = {} as Harness;
  h.spool = await openSpool({ dir, logger });
  h.t = await createTestApp(
    {},
    {
      recorder: (deps, database) => {
        const url = new URL(database.url);
        url.searchParams.set('options', `-c ${settings}`);
        h.replayDb = createDb(url.toString(), 4);
        h.recorder = createGroupCommitRecorder({
          db: h.replayDb.db,
          logger: deps.logger,
          spool: h.spool,
          batchMax: 50,
          batchWaitMs: 2,
          queueMax: 1000,
          maxInFlight: 2,
          probeIntervalMs: 50,
          replayChunk: 10,
          replayBackoffMs: { initial: 20, max: 200 },
        });
        deps.lifecycle.ingest = h.recorder;
        return h.recorder;
      },
    },
  );
  h.close = async () => {
    await h.t.close();
    await h.replayDb.db.destroy();
  };
  return h;
}

function event(overrides: Record<string, string> = {}): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(overrides), { receivedAt: new Date(), storeBody: false });
}

/** A spool an earlier process left behind: these events were acknowledged, then it stopped. */
async function leftInSpool(dir: string, events: StatusEvent[]): Promise<void> {
  const previous = await openSpool({ dir, logger });
  await previous.append(events);
  await previous.close();
}

async function stored(h: Harness, ids: readonly string[]) {
  return h.t.database.db
    .selectFrom('status_events')
    .select(['message_id', 'raw_status', 'source'])
    .where('message_id', 'in', ids)
    .execute();
}

/** Holds message `id`'s row locked in another session until the returned function is called. */
async function lockMessage(h: Harness, id: string): Promise<() => Promise<void>> {
  const client = await holdRowLock(h.t.database.url, id);
  return async () => {
    await client.query('COMMIT');
    await client.end();
  };
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-replay-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

test.each([
  ['a row lock outlasts lock_timeout', 'lock_timeout=100', '55P03'],
  ['the statement outlasts statement_timeout', 'statement_timeout=100', '57014'],
])(
  'When %s during a replay, then the event is retried with backoff until it is stored, never dead-lettered, and the other messages of its chunk are not held up',
  async (_what, settings, sqlstate) => {
    const blocked = event({ MessageStatus: 'sent' });
    // The same replay chunk (replayChunk 10) as the blocked message's event.
    const others = Array.from({ length: 9 }, () => event());
    const later = event({ MessageSid: blocked.messageId, MessageStatus: 'delivered' });
    await leftInSpool(dir, [later, ...others]);
    const h = await harness(dir, settings);
    try {
      await recordEvents(h.t.database.db, [blocked]);
      const release = await lockMessage(h, blocked.messageId);

      h.recorder.start();
      await eventually(() => h.recorder.stats().replayRetries >= 4, 'several retries');
      // The rest of the chunk went through around the locked message.
      await eventually(
        async () =>
          (
            await stored(
              h,
              others.map((e) => e.messageId),
            )
          ).length === others.length,
        'the other messages stored',
      );
      const status = h.recorder.status();
      expect(status.spool).toEqual(
        expect.objectContaining({ state: 'replaying', retrying: sqlstate, dead_letters: 0 }),
      );
      const ready = await request(h.t.publicApp).get('/readyz');
      expect(ready.body.spool).toEqual(
        expect.objectContaining({ state: 'replaying', retrying: sqlstate }),
      );

      await release();
      await eventually(() => h.recorder.mode() === 'direct', 'the spool replayed');
      const rows = await stored(h, [blocked.messageId]);
      expect(rows.map((row) => `${row.raw_status} ${row.source}`).sort()).toEqual([
        'delivered replay',
        'sent callback',
      ]);
      const message = await h.t.database.db
        .selectFrom('messages')
        .select('status')
        .where('id', '=', blocked.messageId)
        .executeTakeFirstOrThrow();
      expect(message.status).toBe('delivered');
      expect(h.recorder.stats()).toEqual(
        expect.objectContaining({ deadLettered: 0, replayed: others.length + 1 }),
      );
      expect(h.spool.deadLetters()).toBe(0);
      expect(h.spool.depth()).toBe(0);
    } finally {
      await h.close();
    }
  },
);

test('When the database refuses an event for good, then only it is dead-lettered, it shows in the metric and readiness, and the command requeues it once the cause is fixed', async () => {
  const events = Array.from({ length: 4 }, () => event());
  const poisoned = events[2]!;
  await leftInSpool(dir, events);
  const h = await harness(dir, 'lock_timeout=1000');
  const metrics = createMetrics({ spoolDeadLetters: h.spool.deadLetters, processMetrics: false });
  // What "can never be stored" looks like to PostgreSQL: a constraint the value violates.
  await sql
    .raw(
      `ALTER TABLE status_events ADD CONSTRAINT test_refuses CHECK (message_id <> '${poisoned.messageId}')`,
    )
    .execute(h.t.database.db);
  try {
    h.recorder.start();
    await eventually(() => h.recorder.mode() === 'direct', 'the spool replayed');
    expect(
      (
        await stored(
          h,
          events.map((e) => e.messageId),
        )
      ).length,
    ).toBe(3);
    expect(h.recorder.stats().deadLettered).toBe(1);

    // Visible: readiness says so (and stays ready), and so does /metrics.
    const ready = await request(h.t.publicApp).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.spool).toEqual({ state: 'idle', depth: 0, dead_letters: 1 });
    expect(await metrics.registry.metrics()).toMatch(/^sw_status_spool_dead_letters 1$/m);

    // The operator fixes the cause, then runs the command beside the running service: the
    // service (it holds the directory) requeues and replays.
    await sql`ALTER TABLE status_events DROP CONSTRAINT test_refuses`.execute(h.t.database.db);
    const command = await runSpoolCommand(['requeue-dead-letters', dir]);
    expect(command).toEqual(
      expect.objectContaining({
        code: 0,
        stdout: expect.stringMatching(
          /^requeued 1 dead letters into the spool of sw-status pid \d+/,
        ),
      }),
    );
    await eventually(
      async () => (await stored(h, [poisoned.messageId])).length === 1,
      'the requeued event stored',
    );
    await eventually(() => h.recorder.mode() === 'direct', 'the spool replayed again');
    expect(h.spool.deadLetters()).toBe(0);
    expect(await metrics.registry.metrics()).toMatch(/^sw_status_spool_dead_letters 0$/m);
  } finally {
    await h.close();
  }
});

test('When a spooled event is too long for an index (54000), then it is dead-lettered and the spool drains: callbacks reach PostgreSQL again, not the spool forever', async () => {
  // Left by a release that did not bound `to` at the edge. Random bytes do not compress: an
  // index entry over btree's cap of about 2.7 kB.
  const poisoned = { ...event(), to: randomBytes(4500).toString('base64url') };
  const others = [event(), event(), event()];
  await leftInSpool(dir, [others[0]!, poisoned, others[1]!, others[2]!]);
  const h = await harness(dir, 'lock_timeout=1000');
  try {
    h.recorder.start();
    await eventually(
      async () =>
        (
          await stored(
            h,
            others.map((e) => e.messageId),
          )
        ).length === others.length,
      'the neighbours stored',
    );
    // Were 54000 transient, the replay would retry the event forever and never end.
    await eventually(() => h.recorder.mode() === 'direct', 'the spool replayed', 20_000);
    expect(h.recorder.status().spool).toMatchObject({ dead_letters: 1 });
    expect(h.recorder.status().spool.retrying).toBeUndefined();
    // A live callback after it reaches PostgreSQL, not the spool.
    const live = cxmlFields();
    expect((await postCxml(h.t.publicApp, live)).status).toBe(200);
    expect(await stored(h, [live.MessageSid!])).toHaveLength(1);
  } finally {
    await h.close();
  }
}, 30_000);

test('When a spool directory is orphaned, then the command replays it into DATABASE_URL exactly once, and refuses a directory a live process holds', async () => {
  const events = Array.from({ length: 5 }, () => event());
  await leftInSpool(dir, events);
  const t = await createTestApp();
  try {
    // One of them made it in before the outage's process stopped.
    await recordEvents(t.database.db, [events[0]!]);
    const first = await runSpoolCommand(['replay', dir], { DATABASE_URL: t.database.url });
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`replaying 5 events from ${dir}`);
    expect(first.stdout).toMatch(/replayed 5 events .* 0 left, 0 dead letters/);
    const rows = await t.database.db
      .selectFrom('status_events')
      .select(['message_id', 'source'])
      .where(
        'message_id',
        'in',
        events.map((e) => e.messageId),
      )
      .execute();
    expect(rows.map((row) => row.message_id).sort()).toEqual(events.map((e) => e.messageId).sort());
    expect(rows.filter((row) => row.source === 'replay')).toHaveLength(4);

    const again = await runSpoolCommand(['replay', dir], { DATABASE_URL: t.database.url });
    expect(again).toEqual(
      expect.objectContaining({ code: 0, stdout: expect.stringContaining('nothing to replay') }),
    );

    const held = await openSpool({ dir, logger, command: 'npm start' });
    try {
      const refused = await runSpoolCommand(['replay', dir], { DATABASE_URL: t.database.url });
      expect(refused.code).toBe(1);
      expect(refused.stdout).toContain(`is in use by sw-status pid ${process.pid} (npm start)`);
    } finally {
      await held.close();
    }
  } finally {
    await t.close();
  }
});

/** `npm run spool -- …` as an operator runs it (through tsx, as the npm script does). */
